"""The dashboard's file server (``api/ui.py``) on a made-up build: which file each path
gets, types and caching, gzip and ETags, no way out of the build directory, and 503
when there is no build."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.testclient import TestClient

from modelfleet.api import ui
from modelfleet.errors import FleetError, render_error

INDEX = b"<!doctype html><title>dash</title>" + b"<!-- padding -->" * 64
SCRIPT = b"console.log('dashboard');\n" * 64


def _build(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "assets" / "index-abc123.js").write_bytes(SCRIPT)
    (root / "assets" / "index-abc123.css").write_bytes(b"body{margin:0}")
    (root / "assets" / "logo-1.svg").write_bytes(b"<svg/>")
    (root / "assets" / "font-2.woff2").write_bytes(b"\x00\x01")
    return root


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = _build(tmp_path / "ui_dist")
    monkeypatch.setattr(ui, "DIST", root)
    return root


@pytest.fixture
def client(dist: Path) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(ui.router)

    @app.exception_handler(FleetError)
    async def fleet_error(request: Request, exc: FleetError) -> Response:
        status, headers, body = render_error(exc, request.url.path)
        return Response(body, status_code=status,
                        headers={k.decode(): v.decode() for k, v in headers})

    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/models", "/ui/models/sim/logs",
                                  "/ui/keys?x=1"])
def test_ui_page_paths_get_the_index(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.content == INDEX
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


@pytest.mark.parametrize(("name", "kind"), [
    ("index-abc123.js", "text/javascript; charset=utf-8"),
    ("index-abc123.css", "text/css; charset=utf-8"),
    ("logo-1.svg", "image/svg+xml"),
    ("font-2.woff2", "font/woff2"),
])
def test_ui_assets_have_their_type_and_are_cached_for_good(
        client: TestClient, name: str, kind: str) -> None:
    r = client.get(f"/ui/assets/{name}", headers={"accept-encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-type"] == kind
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_ui_unknown_asset_is_404_not_the_page(client: TestClient) -> None:
    r = client.get("/ui/assets/index-gone.js")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "ROUTE_NOT_FOUND"


@pytest.mark.parametrize("path", [
    "/ui/..%2F..%2Fpyproject.toml",
    "/ui/%2e%2e/%2e%2e/secret.txt",
    "/ui/assets/..%2F..%2Fsecret.txt",
    "/ui//etc/passwd",
    "/ui/assets/%2Fetc%2Fpasswd",
])
def test_ui_paths_never_leave_the_build(client: TestClient, dist: Path, path: str) -> None:
    (dist.parent / "secret.txt").write_text("top secret")
    r = client.get(path)
    assert b"top secret" not in r.content and b"root:" not in r.content
    assert r.status_code in (200, 404)
    if r.status_code == 200:
        assert r.content == INDEX


def test_ui_symlinks_in_the_build_are_not_served(client: TestClient, dist: Path) -> None:
    (dist.parent / "secret.txt").write_text("top secret")
    os.symlink(dist.parent / "secret.txt", dist / "assets" / "linked.txt")
    ui.load.cache_clear()
    r = client.get("/ui/assets/linked.txt")
    assert r.status_code == 404


def test_ui_gzip_for_clients_that_accept_it(client: TestClient) -> None:
    r = client.get("/ui/assets/index-abc123.js", headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
    assert r.content == SCRIPT  # the client undid the gzip
    raw = client.get("/ui/assets/index-abc123.js", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.content == SCRIPT
    assert len(gzip.compress(SCRIPT)) < len(SCRIPT)


def test_ui_etag_answers_304(client: TestClient) -> None:
    first = client.get("/ui/")
    again = client.get("/ui/", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_ui_head_has_no_body(client: TestClient) -> None:
    r = client.head("/ui/")
    assert r.status_code == 200 and r.content == b""


def test_ui_a_rebuild_is_served_without_a_restart(client: TestClient, dist: Path) -> None:
    assert client.get("/ui/").content == INDEX
    (dist / "index.html").write_bytes(b"<!doctype html><title>new build</title>")
    stat = (dist / "index.html").stat()
    os.utime(dist / "index.html", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    (dist / "assets" / "index-def456.js").write_bytes(b"// new")
    assert b"new build" in client.get("/ui/").content
    assert client.get("/ui/assets/index-def456.js").status_code == 200


def test_ui_without_a_build_is_503(client: TestClient, dist: Path) -> None:
    (dist / "index.html").unlink()
    r = client.get("/ui/models")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "UI_NOT_BUILT"


def test_ui_routes_are_public_for_reads_only() -> None:
    from modelfleet.auth.policy import required_role
    from modelfleet.settings import AuthSettings

    auth = AuthSettings()
    assert required_role("GET", "/ui", auth) is None
    assert required_role("GET", "/ui/assets/x.js", auth) is None
    assert required_role("HEAD", "/ui/models", auth) is None
    assert required_role("POST", "/ui/models", auth) == "admin"
    assert required_role("GET", "/uix", auth) == "user"
