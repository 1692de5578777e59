"""Images of chat requests, resolved by the gateway and handed on as ``data:`` URLs.

``inline_media`` walks ``messages[*].content`` for ``image_url`` parts, resolves each
URL itself (``data:`` here, ``file://`` in ``media_file``, ``http(s)://`` in
``media_http``), checks the bytes with Pillow and puts a ``data:image/...;base64``
URL in place, so that engines never fetch anything. The checks: at most
``max_images`` images, ``max_bytes`` each, ``max_pixels`` each, formats PNG, JPEG,
GIF, WEBP and BMP. ``video_url`` and ``audio_url`` parts, which the gateway does not
resolve, are accepted only as ``data:`` URLs for the same reason.

Errors carry ``param`` = the part's path (``messages[0].content[1].image_url``):
403 ``MEDIA_FORBIDDEN``, 400 ``INVALID_MEDIA`` / ``MEDIA_FETCH_FAILED``, 413
``MEDIA_TOO_LARGE``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

from modelfleet.errors import BodyTooLargeError, FleetError, InvalidRequestError
from modelfleet.gateway.media_file import read_file_url
from modelfleet.gateway.media_http import MediaFetcher
from modelfleet.settings import MediaSettings

__all__ = ["MediaFetcher", "check_image", "decode_data_url", "inline_media"]

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif",
         "WEBP": "image/webp", "BMP": "image/bmp"}
_FORMATS = list(_MIME)
# Smaller images are checked on the event loop; a thread costs more than they do.
_THREAD_BYTES = 256 * 1024
_CONCURRENCY = 4
_PASSED_PARTS = ("video_url", "audio_url")


def _invalid(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, code="INVALID_MEDIA")


def check_image(data: bytes, max_pixels: int) -> str:
    """The MIME type of ``data`` if Pillow accepts it as a PNG, JPEG, GIF, WEBP or BMP.

    Raises InvalidRequestError (400 ``INVALID_MEDIA``) for anything else or a damaged
    file, BodyTooLargeError (413 ``MEDIA_TOO_LARGE``) past ``max_pixels``.
    """
    from PIL import Image  # here: requests without images never load Pillow

    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            fmt, (width, height) = image.format, image.size
            # The header is enough to refuse a decompression bomb before decoding it.
            if width * height > max_pixels:
                raise _too_many_pixels(width, height, max_pixels)
            image.verify()
    except Image.DecompressionBombError:
        raise _too_many_pixels(0, 0, max_pixels) from None
    except FleetError:
        raise
    except Exception:  # Pillow's plugins raise many kinds on hostile input
        raise _invalid("the media is not a valid PNG, JPEG, GIF, WEBP or BMP image") from None
    if fmt is None or fmt not in _MIME:
        raise _invalid(f"{fmt} images are not accepted")
    return _MIME[fmt]


def _too_many_pixels(width: int, height: int, max_pixels: int) -> BodyTooLargeError:
    size = f"{width}×{height} pixels, " if width else ""
    return BodyTooLargeError(f"the image has {size}more than the limit of {max_pixels} pixels",
                             code="MEDIA_TOO_LARGE")


@dataclass(slots=True)
class DataURL:
    mime: str
    data: bytes
    # The base64 text as given, when it was canonical (no whitespace to strip).
    encoded: str | None


def decode_data_url(url: str, max_bytes: int) -> DataURL:
    """The bytes of a ``data:[<type>];base64,<data>`` URL whose type is an image or unset.

    Raises InvalidRequestError (400 ``INVALID_MEDIA``) for other forms or bad base64,
    BodyTooLargeError (413 ``MEDIA_TOO_LARGE``) past ``max_bytes``.
    """
    header, sep, text = url[5:].partition(",")
    if not sep:
        raise _invalid("the data: URL has no ',' before its data")
    mime, *params = [p.strip().lower() for p in header.split(";")]
    if "base64" not in params:
        raise _invalid("data: media URLs must be base64-encoded")
    if mime and not mime.startswith("image/") and mime != "application/octet-stream":
        raise _invalid(f"the data: URL holds {mime}, not an image")
    # A cheap bound before decoding; the exact one follows (base64 may carry whitespace).
    if len(text) > 2 * 4 * (max_bytes // 3 + 1):
        raise BodyTooLargeError(f"the image is larger than the media limit of {max_bytes} bytes",
                                code="MEDIA_TOO_LARGE")
    encoded: str | None = text
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        encoded = None
        try:  # clients that wrap base64 lines
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("the data: URL is not valid base64") from None
    if len(data) > max_bytes:
        raise BodyTooLargeError(f"the image is larger than the media limit of {max_bytes} bytes",
                                code="MEDIA_TOO_LARGE")
    return DataURL(mime, data, encoded)


async def _resolve(url: str, media: MediaSettings, fetcher: MediaFetcher) -> str:
    """The ``data:`` URL to send for ``url``: resolved, checked, canonical."""
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    encoded: str | None = None
    if scheme == "data":
        decoded = decode_data_url(url, media.max_bytes)
        data, encoded = decoded.data, decoded.encoded
    elif scheme == "file":
        data = await asyncio.to_thread(
            read_file_url, url, media.allowed_local_media_path, media.max_bytes
        )
    elif scheme in ("http", "https"):
        data = await fetcher.fetch(url)
    else:
        raise _invalid("media URLs must be data:, file:// or http(s):// URLs")
    if len(data) > _THREAD_BYTES:
        mime = await asyncio.to_thread(check_image, data, media.max_pixels)
    else:
        mime = check_image(data, media.max_pixels)
    if encoded is None:
        encoded = base64.b64encode(data).decode("ascii")
    return f"data:{mime};base64,{encoded}"


def _image_parts(payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(param, part)`` of every image part; other URL media must already be data:."""
    found: list[tuple[str, dict[str, Any]]] = []
    messages = payload.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            param = f"messages[{i}].content[{j}].{kind}"
            if kind == "image_url":
                found.append((param, part))
            elif kind in _PASSED_PARTS:
                url = _part_url(part, kind, param)
                if not url.lower().startswith("data:"):
                    raise InvalidRequestError(f"{kind} parts must be data: URLs",
                                              param=param, code="INVALID_MEDIA")
    return found


def _part_url(part: dict[str, Any], kind: str, param: str) -> str:
    value = part.get(kind)
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(f"the {kind} part has no URL", param=param,
                                  code="INVALID_MEDIA")
    return url


async def inline_media(payload: dict[str, Any], media: MediaSettings,
                       fetcher: MediaFetcher) -> bool:
    """Replace every image URL of a chat payload by a checked ``data:`` URL, in place.

    Returns whether anything changed. Images are resolved concurrently, a few at a
    time; the first failure cancels the rest and is raised (see the module docstring).
    """
    parts = _image_parts(payload)
    if len(parts) > media.max_images:
        raise InvalidRequestError(
            f"the request has {len(parts)} images, more than the limit of {media.max_images}",
            param="messages", code="INVALID_MEDIA",
        )
    if not parts:
        return False
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(param: str, part: dict[str, Any]) -> bool:
        url = _part_url(part, "image_url", param)
        async with gate:
            try:
                inlined = await _resolve(url, media, fetcher)
            except FleetError as exc:
                exc.param = exc.param or param
                raise
        value = part["image_url"]
        if isinstance(value, dict):
            if value["url"] == inlined:
                return False
            value["url"] = inlined
        else:  # a bare string: given the OpenAI shape engines expect
            part["image_url"] = {"url": inlined}
        return True

    tasks = [asyncio.ensure_future(one(param, part)) for param, part in parts]
    try:
        results = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return any(results)
