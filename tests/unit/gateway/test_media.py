"""Image parts of chat payloads: data: URLs, Pillow's checks, the walk over messages."""

import base64
import copy
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from modelfleet.errors import (
    BodyTooLargeError,
    FleetError,
    InvalidRequestError,
    PermissionDeniedError,
)
from modelfleet.gateway import media as media_module
from modelfleet.gateway.media import check_image, decode_data_url, inline_media
from modelfleet.gateway.media_http import MediaFetcher
from modelfleet.settings import MediaSettings


def _image(fmt: str, size: tuple[int, int] = (4, 3), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format=fmt)
    return out.getvalue()


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _chat(*parts: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": list(parts)},
    ]}


def _image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


@pytest.fixture()
async def fetcher() -> AsyncIterator[MediaFetcher]:
    f = MediaFetcher(MediaSettings())
    yield f
    await f.close()


@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                      ("GIF", "image/gif"), ("WEBP", "image/webp"),
                                      ("BMP", "image/bmp")])
def test_check_image_accepts_the_listed_formats(fmt: str, mime: str) -> None:
    assert check_image(_image(fmt), 1000) == mime


@pytest.mark.parametrize("data", [b"", b"hello", _image("PNG")[:40], _image("TIFF"),
                                  _image("ICO"), b"<svg xmlns='http://www.w3.org/2000/svg'/>"])
def test_check_image_refuses_other_data(data: bytes) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_image(data, 1000)
    assert info.value.status == 400 and info.value.code == "INVALID_MEDIA"


def test_check_image_refuses_decompression_bombs() -> None:
    bomb = _image("PNG", (20000, 20000), mode="1")
    assert len(bomb) < 100_000  # a small file declaring 400 million pixels
    with pytest.raises(BodyTooLargeError) as info:
        check_image(bomb, 50_000_000)
    assert info.value.status == 413 and info.value.code == "MEDIA_TOO_LARGE"
    # Below Pillow's own limit, ours applies.
    with pytest.raises(BodyTooLargeError):
        check_image(_image("PNG", (100, 100)), 9_999)
    assert check_image(_image("PNG", (100, 100)), 10_000) == "image/png"


def test_decode_data_url_reads_base64_images() -> None:
    png = _image("PNG")
    decoded = decode_data_url(_data_url(png), 1000)
    assert decoded.data == png and decoded.encoded is not None
    wrapped = "data:;base64," + "\n".join(base64.b64encode(png).decode()[i:i + 8]
                                           for i in range(0, 80, 8))
    assert decode_data_url(wrapped, 1000).encoded is None


@pytest.mark.parametrize("url", ["data:image/png;base64,@@@@", "data:image/png,rawbytes",
                                 "data:text/plain;base64,aGk=", "data:image/png;base64"])
def test_decode_data_url_refuses_malformed_urls(url: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_data_url(url, 1000)
    assert info.value.code == "INVALID_MEDIA"


def test_decode_data_url_refuses_large_data() -> None:
    with pytest.raises(BodyTooLargeError):
        decode_data_url(_data_url(b"\0" * 1001), 1000)
    with pytest.raises(BodyTooLargeError):
        decode_data_url("data:image/png;base64," + "A" * 100_000, 1000)


async def test_inline_media_rewrites_mixed_parts(tmp_path: Path, fetcher: MediaFetcher) -> None:
    (tmp_path / "cat.gif").write_bytes(_image("GIF"))
    jpeg = _image("JPEG")
    payload = _chat({"type": "text", "text": "compare these"},
                    _image_part((tmp_path / "cat.gif").as_uri()),
                    _image_part(_data_url(jpeg, "application/octet-stream")),
                    {"type": "image_url", "image_url": _data_url(_image("BMP"), "image/bmp")})
    media = MediaSettings(allowed_local_media_path=str(tmp_path))
    assert await inline_media(payload, media, fetcher) is True
    parts = payload["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "compare these"}
    assert parts[1]["image_url"]["url"].startswith("data:image/gif;base64,")
    assert parts[1]["image_url"]["detail"] == "low"
    assert parts[2]["image_url"]["url"] == _data_url(jpeg, "image/jpeg")
    assert parts[3]["image_url"] == {"url": _data_url(_image("BMP"), "image/bmp")}


async def test_inline_media_leaves_valid_data_urls(fetcher: MediaFetcher) -> None:
    payload = _chat(_image_part(_data_url(_image("PNG"))), _image_part(_data_url(_image("WEBP"),
                                                                                 "image/webp")))
    before = copy.deepcopy(payload)
    assert await inline_media(payload, MediaSettings(), fetcher) is False
    assert payload == before


async def test_inline_media_ignores_payloads_without_images(fetcher: MediaFetcher) -> None:
    payload = _chat({"type": "text", "text": "hi"})
    payload["messages"].append({"role": "assistant", "content": None})
    before = copy.deepcopy(payload)
    assert await inline_media(payload, MediaSettings(), fetcher) is False
    assert payload == before
    assert await inline_media({"prompt": "x"}, MediaSettings(), fetcher) is False


async def test_inline_media_limits_the_image_count(fetcher: MediaFetcher) -> None:
    url = _data_url(_image("PNG"))
    media = MediaSettings(max_images=3)
    assert await inline_media(_chat(*[_image_part(url)] * 3), media, fetcher) is False
    with pytest.raises(InvalidRequestError) as info:
        await inline_media(_chat(*[_image_part(url)] * 4), media, fetcher)
    assert info.value.param == "messages" and "4 images" in info.value.message


async def test_inline_media_names_the_failing_part(fetcher: MediaFetcher) -> None:
    good = _image_part(_data_url(_image("PNG")))
    cases: list[tuple[dict[str, Any], type[FleetError], str]] = [
        (_image_part("data:image/png;base64,!!"), InvalidRequestError, "INVALID_MEDIA"),
        (_image_part(_data_url(b"not an image")), InvalidRequestError, "INVALID_MEDIA"),
        (_image_part("ftp://example.com/a.png"), InvalidRequestError, "INVALID_MEDIA"),
        (_image_part("file:///etc/passwd"), PermissionDeniedError, "MEDIA_FORBIDDEN"),
        ({"type": "image_url", "image_url": {}}, InvalidRequestError, "INVALID_MEDIA"),
    ]
    for bad, kind, code in cases:
        with pytest.raises(kind) as info:
            await inline_media(_chat(good, bad), MediaSettings(), fetcher)
        assert info.value.code == code
        assert info.value.param == "messages[1].content[1].image_url"


async def test_inline_media_refuses_video_and_audio_urls(fetcher: MediaFetcher) -> None:
    payload = _chat({"type": "video_url", "video_url": {"url": "http://example.com/v.mp4"}})
    with pytest.raises(InvalidRequestError) as info:
        await inline_media(payload, MediaSettings(), fetcher)
    assert info.value.param == "messages[1].content[0].video_url"
    ok = _chat({"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,AAAA"}})
    assert await inline_media(ok, MediaSettings(), fetcher) is False


async def test_inline_media_checks_large_images_in_a_thread(
    fetcher: MediaFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_thread: list[str] = []
    to_thread = media_module.asyncio.to_thread

    async def spy(func: Any, /, *args: Any) -> Any:
        in_thread.append(func.__name__)
        return await to_thread(func, *args)

    monkeypatch.setattr(media_module.asyncio, "to_thread", spy)
    small = _chat(_image_part(_data_url(_image("PNG"))))
    assert await inline_media(small, MediaSettings(), fetcher) is False
    assert in_thread == []
    noisy = Image.frombytes("RGB", (400, 400), bytes(range(256)) * 1875)
    out = io.BytesIO()
    noisy.save(out, format="BMP")
    assert len(out.getvalue()) > 256 * 1024
    payload = _chat(_image_part(_data_url(out.getvalue(), "image/bmp")))
    assert await inline_media(payload, MediaSettings(), fetcher) is False
    assert in_thread == ["check_image"]
