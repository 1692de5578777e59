"""Images in chat requests through a running gateway: resolved and checked by the gateway,
handed to the engine as data: URLs; escapes and SSRF refused before the engine is asked."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.helpers import Gateway, simulator_model, start_gateway


def _png(colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


def _chat(gw: Gateway, url: str) -> httpx.Response:
    # the image first and enough words after it to fill the engine's cache blocks
    content = [{"type": "image_url", "image_url": {"url": url}},
               {"type": "text", "text": " ".join(["what is in this picture"] * 10)}]
    return httpx.post(gw.url + "/v1/chat/completions", timeout=30, json={
        "model": "sim", "messages": [{"role": "user", "content": content}], "max_tokens": 4})


def _error(r: httpx.Response) -> dict[str, Any]:
    err: dict[str, Any] = r.json()["error"]
    return err


def test_images_are_checked_and_inlined(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "cat.png").write_bytes(_png())
    (tmp_path / "secret.png").write_bytes(_png("blue"))
    os.symlink(tmp_path / "secret.png", media / "link.png")
    (media / "notes.txt").write_text("not an image")
    gw = start_gateway(tmp_path, [simulator_model("sim")],
                       media={"allowed_local_media_path": str(media), "max_bytes": 100_000})
    try:
        first = _chat(gw, f"file://{media}/cat.png")
        assert first.status_code == 200, first.text
        # the engine saw a data: URL: the same image sent as one hits its prefix cache
        data_url = "data:image/png;base64," + base64.b64encode(_png()).decode()
        second = _chat(gw, data_url)
        assert second.status_code == 200, second.text
        assert second.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0

        for url, code in [
            (f"file://{tmp_path}/secret.png", "MEDIA_FORBIDDEN"),
            (f"file://{media}/../secret.png", "MEDIA_FORBIDDEN"),
            (f"file://{media}/%2e%2e/secret.png", "MEDIA_FORBIDDEN"),
            (f"file://{media}/link.png", "MEDIA_FORBIDDEN"),
            ("file:///proc/self/environ", "MEDIA_FORBIDDEN"),
            ("file:///etc/passwd", "MEDIA_FORBIDDEN"),
            (f"file://otherhost{media}/cat.png", "MEDIA_FORBIDDEN"),
            (f"{gw.url}/health", "MEDIA_FORBIDDEN"),  # loopback: the gateway itself
            ("http://169.254.169.254/latest/meta-data/", "MEDIA_FORBIDDEN"),
            ("http://[::1]:1/x.png", "MEDIA_FORBIDDEN"),
            ("http://2130706433/x.png", "MEDIA_FORBIDDEN"),
            (f"file://{media}/notes.txt", "INVALID_MEDIA"),
            ("data:image/png;base64,@@@", "INVALID_MEDIA"),
            ("gopher://example.com/x", "INVALID_MEDIA"),
        ]:
            r = _chat(gw, url)
            assert r.status_code in (400, 403), (url, r.text)
            assert _error(r)["code"] == code, (url, r.text)
            assert _error(r)["param"].startswith("messages[0].content[0]"), r.text
        big = base64.b64encode(os.urandom(150_000)).decode()
        r = _chat(gw, "data:image/png;base64," + big)
        assert r.status_code == 413 and _error(r)["code"] == "MEDIA_TOO_LARGE", r.text
        # the engine was asked only twice
        stats = httpx.get(gw.url + "/api/models/sim", timeout=10).json()["performance_stats"]
        assert stats["requests"] == 2
    finally:
        gw.stop()


def test_file_urls_are_refused_without_an_allowed_directory(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(_png())
    gw = start_gateway(tmp_path, [simulator_model("sim")])
    try:
        r = _chat(gw, f"file://{tmp_path}/cat.png")
        assert r.status_code == 403 and _error(r)["code"] == "MEDIA_FORBIDDEN", r.text
    finally:
        gw.stop()
