"""``file://`` media: read an image only from inside ``media.allowed_local_media_path``.

The decision is made on the opened file, never on a path checked first and opened
later. The walk starts at a descriptor of the allowed root and opens one component
at a time relative to its parent with ``O_NOFOLLOW``, so ``..``, symbolic links and
anything outside the root cannot be reached, and a path swapped between two steps
cannot redirect the open. The final descriptor must be a regular file with a single
link (a hard link could name a file outside the root) no larger than ``max_bytes``.

Every failure to open inside the root is the same 403, so that a client cannot probe
which files exist. ``read_file_url`` blocks; ``inline_media`` runs it in a thread.
"""

from __future__ import annotations

import os
import stat
from urllib.parse import unquote, urlsplit

from modelfleet.errors import BodyTooLargeError, InvalidRequestError, PermissionDeniedError

# Pseudo file systems: never a media root, whatever the configuration says.
_PSEUDO_ROOTS = frozenset({"proc", "sys", "dev"})
_READ_CHUNK = 1024 * 1024


def _forbidden(message: str) -> PermissionDeniedError:
    return PermissionDeniedError(message, code="MEDIA_FORBIDDEN")


_NOT_READABLE = "the file is not a readable media file inside the allowed media path"


def _components(path: str) -> list[str]:
    """The parts of an absolute, already decoded path; ``.``, ``..`` and ``//`` refused."""
    if not path.startswith("/"):
        raise InvalidRequestError("a file:// URL needs an absolute path", code="INVALID_MEDIA")
    parts = path.split("/")[1:]
    for part in parts:
        if part in ("", ".", ".."):
            raise _forbidden("file:// paths may not contain '.', '..' or empty components")
        if "\x00" in part:
            raise _forbidden(_NOT_READABLE)
    return parts


def _relative_parts(parts: list[str], root: str) -> list[str]:
    """``parts`` below ``root`` (as configured, or its resolved spelling); 403 outside it.

    The root is trusted configuration, so resolving its own spelling is safe: nothing
    of the request's path is resolved, only compared.
    """
    for spelling in dict.fromkeys((os.path.abspath(root), os.path.realpath(root))):
        prefix = [p for p in spelling.split("/") if p]
        if prefix and prefix[0] in _PSEUDO_ROOTS:
            raise _forbidden("the allowed media path is a pseudo file system")
        if parts[: len(prefix)] == prefix and len(parts) > len(prefix):
            return parts[len(prefix):]
    raise _forbidden("the file is outside the allowed media path")


def _open_beneath(root: str, parts: list[str]) -> int:
    """A descriptor of ``root/parts...`` opened component by component, links refused."""
    base = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(root, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            child = os.open(part, base | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat refuses it after.
        leaf = os.open(parts[-1], base | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    return leaf


def _read_capped(fd: int, max_bytes: int) -> bytes:
    """At most ``max_bytes`` from ``fd``; a file that grew past it while read is refused."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise BodyTooLargeError(
                f"the file is larger than the media limit of {max_bytes} bytes",
                code="MEDIA_TOO_LARGE",
            )


def read_file_url(url: str, root: str | None, max_bytes: int) -> bytes:
    """The bytes of the regular file a ``file://`` URL names inside ``root``.

    Raises PermissionDeniedError (403, ``MEDIA_FORBIDDEN``) when ``root`` is None, the
    URL names a host, escapes the root, crosses a symbolic link, or the file cannot be
    opened, is not a regular file, or has more than one link; InvalidRequestError (400,
    ``INVALID_MEDIA``) for a malformed URL; BodyTooLargeError (413, ``MEDIA_TOO_LARGE``)
    when the file is larger than ``max_bytes``, before any byte is read. Blocking.
    """
    if root is None:
        raise _forbidden("file:// media URLs are disabled (no allowed_local_media_path is set)")
    split = urlsplit(url)
    if split.scheme.lower() != "file":
        raise InvalidRequestError("not a file:// URL", code="INVALID_MEDIA")
    if split.netloc.lower() not in ("", "localhost"):
        raise _forbidden("file:// URLs naming a remote host are refused")
    if split.query or split.fragment:
        raise InvalidRequestError("file:// media URLs take no query or fragment",
                                  code="INVALID_MEDIA")
    # Decoded exactly once: %2e%2e is '..', %252e%252e is the literal name '%2e%2e'.
    parts = _relative_parts(_components(unquote(split.path)), root)
    try:
        fd = _open_beneath(root, parts)
    except (OSError, ValueError):
        raise _forbidden(_NOT_READABLE) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise _forbidden(_NOT_READABLE)
        if info.st_size > max_bytes:
            raise BodyTooLargeError(
                f"the file has {info.st_size} bytes, more than the media limit of {max_bytes}",
                code="MEDIA_TOO_LARGE",
            )
        try:
            return _read_capped(fd, max_bytes)
        except OSError:
            raise _forbidden(_NOT_READABLE) from None
    finally:
        os.close(fd)
