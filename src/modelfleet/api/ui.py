"""The web dashboard at ``/ui``: the files that ``web/`` builds into ``ui_dist``.

- ``GET|HEAD /ui``, ``/ui/`` and every ``/ui/<path>`` that is not a built file answer
  ``index.html``: the dashboard routes in the browser, so a reload or a shared link to
  ``/ui/models/x/logs`` lands on the same page. It is revalidated on every load
  (``no-cache`` with an ETag), so a new build is picked up at once.
- ``/ui/assets/<name>``: a built file. Its name carries a hash of its content, so it is
  cached for a year (``immutable``); an unknown asset is a 404, not index.html, which
  the browser would try to run as a script.
- Files are read into memory, again whenever ``index.html`` changes (a rebuild while
  the gateway runs), and looked up by name in a dict: a request path is never joined
  to a directory, so ``..`` or an encoded slash cannot reach any other file. Text files
  are also kept gzipped and sent so to clients that accept it.

Without a build (no ``index.html``) every route answers 503 ``UI_NOT_BUILT``.
The routes are public (``auth/policy.py``): static files only; every API call the
page makes carries the user's token.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from modelfleet.errors import RouteNotFoundError, UnavailableError

router = APIRouter(include_in_schema=False)

DIST = Path(__file__).resolve().parent / "ui_dist"
INDEX = "index.html"
ASSETS = "assets/"
MAX_FILE_BYTES = 8 * 1024 * 1024  # a build never has a file this big; skip anything that does

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = (".html", ".js", ".mjs", ".css", ".json", ".map", ".svg", ".txt")
# The page talks only to its own origin (the API, the live feed's WebSocket).
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
               "form-action 'self'")


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    gzipped: bytes | None  # None when compressing does not pay
    content_type: str
    etag: str
    cache_control: str


def content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _static(name: str, body: bytes) -> StaticFile:
    packed = None
    if name.endswith(COMPRESSIBLE) and len(body) > 512:
        packed = gzip.compress(body, 9, mtime=0)
        if len(packed) >= len(body) * 0.9:
            packed = None
    return StaticFile(body=body, gzipped=packed, content_type=content_type(name),
                      etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"',
                      cache_control=IMMUTABLE if name.startswith(ASSETS) else REVALIDATE)


def current(root: Path) -> dict[str, StaticFile]:
    """The files of the build in ``root`` now (read again when its index changed)."""
    try:
        stamp = (root / INDEX).stat().st_mtime_ns
    except OSError:
        stamp = 0
    return load(root, stamp)


@lru_cache(maxsize=2)
def load(root: Path, stamp: int = 0) -> dict[str, StaticFile]:
    """Every regular file under ``root`` by its relative POSIX name (links not followed);
    ``stamp`` only keys the cache."""
    files: dict[str, StaticFile] = {}
    if not root.is_dir():
        return files
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            continue
        name = path.relative_to(root).as_posix()
        files[name] = _static(name, path.read_bytes())
    return files


def pick(files: dict[str, StaticFile], path: str) -> StaticFile:
    """The file a ``/ui/<path>`` request gets: the built file of that name, else the
    page itself (a client-side route); an unknown asset is a 404."""
    path = path.lstrip("/")
    found = files.get(path)
    if found is not None:
        return found
    if path.startswith(ASSETS):
        raise RouteNotFoundError(f"no dashboard file {path[:200]!r}")
    index = files.get(INDEX)
    if index is None:
        raise UnavailableError("the dashboard is not built: run `make web` (needs Node.js)",
                               code="UI_NOT_BUILT")
    return index


def respond(request: Request, file: StaticFile) -> Response:
    headers = {"Cache-Control": file.cache_control, "ETag": file.etag,
               "X-Content-Type-Options": "nosniff"}
    if file.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = PAGE_POLICY
        headers["Referrer-Policy"] = "same-origin"
    if file.gzipped is not None:
        headers["Vary"] = "Accept-Encoding"
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = file.body
    if file.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = file.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=file.content_type, headers=headers)


@router.api_route("/ui", methods=["GET", "HEAD"])
@router.api_route("/ui/{path:path}", methods=["GET", "HEAD"])
async def dashboard(request: Request, path: str = "") -> Response:
    return respond(request, pick(current(DIST), path))
