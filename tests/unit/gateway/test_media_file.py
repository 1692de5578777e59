"""file:// media: only regular, singly linked files reached inside the allowed root."""

import io
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from modelfleet.errors import BodyTooLargeError, InvalidRequestError, PermissionDeniedError
from modelfleet.gateway.media import inline_media
from modelfleet.gateway.media_file import read_file_url
from modelfleet.gateway.media_http import MediaFetcher
from modelfleet.settings import MediaSettings

MAX = 1_000_000


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """``root`` (the allowed path, holding ``sub/cat.png``) and ``outside`` beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "cat.png").write_bytes(_png())
    (outside / "secret.png").write_bytes(_png())
    return root, outside


def _refused(url: str, root: Path | str | None, max_bytes: int = MAX) -> PermissionDeniedError:
    with pytest.raises(PermissionDeniedError) as info:
        read_file_url(url, None if root is None else str(root), max_bytes)
    assert info.value.status == 403 and info.value.code == "MEDIA_FORBIDDEN"
    return info.value


def test_read_file_url_returns_a_file_inside_the_root(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    assert read_file_url((root / "sub" / "cat.png").as_uri(), str(root), MAX) == _png()
    assert read_file_url("file://localhost" + str(root / "sub/cat.png"), str(root), MAX) == _png()


async def test_inline_media_inlines_a_file_url(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": (root / "sub" / "cat.png").as_uri()}}]}]}
    fetcher = MediaFetcher(MediaSettings())
    assert await inline_media(payload, MediaSettings(allowed_local_media_path=str(root)), fetcher)
    url = payload["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")


def test_read_file_url_refuses_without_an_allowed_path(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    err = _refused((root / "sub" / "cat.png").as_uri(), None)
    assert "disabled" in err.message


@pytest.mark.parametrize("tail", [
    "sub/../../outside/secret.png",
    "sub/%2e%2e/%2e%2e/outside/secret.png",
    "sub/%2E%2E%2F%2E%2E%2Foutside/secret.png",
    "sub/./cat.png",
    "sub//cat.png",
    "sub/",
])
def test_read_file_url_refuses_dot_segments(tree: tuple[Path, Path], tail: str) -> None:
    root, _ = tree
    _refused(f"file://{root}/{tail}", root)


def test_read_file_url_decodes_once(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    # %252e%252e is the literal name "%2e%2e", which does not exist: same refusal as outside.
    err = _refused(f"file://{root}/sub/%252e%252e/%252e%252e/outside/secret.png", root)
    assert "inside the allowed media path" in err.message
    (root / "sub" / "%2e%2e").mkdir()
    (root / "sub" / "%2e%2e" / "x.png").write_bytes(_png())
    assert read_file_url(f"file://{root}/sub/%252e%252e/x.png", str(root), MAX) == _png()


def test_read_file_url_refuses_other_hosts_and_outside_paths(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    _refused(f"file://otherhost{root}/sub/cat.png", root)
    _refused("file:///etc/passwd", root)
    _refused((outside / "secret.png").as_uri(), root)
    _refused("file:///proc/self/environ", root)
    _refused(root.as_uri(), root)  # the root itself is no file
    _refused("file:///proc/self/environ", "/proc")
    _refused("file:///proc/self/environ", "/proc/self")


def test_read_file_url_refuses_symlinks(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "zero").symlink_to("/dev/zero")
    (root / "inner.png").symlink_to(root / "sub" / "cat.png")  # even one staying inside
    for name in ("link.png", "linkdir/secret.png", "zero", "inner.png"):
        _refused((root / name).as_uri(), root)


def test_read_file_url_refuses_hard_links(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    os.link(outside / "secret.png", root / "hard.png")
    assert os.stat(root / "hard.png").st_nlink == 2
    _refused((root / "hard.png").as_uri(), root)


def test_read_file_url_refuses_a_fifo_without_hanging(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    os.mkfifo(root / "pipe.png")
    done = threading.Event()
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            _refused((root / "pipe.png").as_uri(), root)
        except BaseException as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=attempt, daemon=True).start()
    if not done.wait(5):
        # Unblock the reader side so the thread can end, then fail.
        os.close(os.open(root / "pipe.png", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening a FIFO hung")
    assert not errors


def test_read_file_url_refuses_a_character_device(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    try:
        os.mknod(root / "null.png", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("no privilege to create a device node here")
    _refused((root / "null.png").as_uri(), root)


def _atime_after_read(path: Path, read: bool) -> float:
    """The access time of ``path`` after an old one was set and, if ``read``, a byte read."""
    os.utime(path, (1000, time.time()))  # relatime updates an access time older than mtime
    if read:
        with open(path, "rb") as f:
            f.read(1)
    return os.stat(path).st_atime


def test_read_file_url_refuses_a_large_file_before_reading(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    with open(root / "huge.png", "wb") as f:
        f.truncate(10 * 1024**3)  # sparse
    _atime_after_read(root / "huge.png", read=False)
    with pytest.raises(BodyTooLargeError) as info:
        read_file_url((root / "huge.png").as_uri(), str(root), MAX)
    assert info.value.status == 413 and info.value.code == "MEDIA_TOO_LARGE"
    if _atime_after_read(root / "sub" / "cat.png", read=True) == 1000:
        pytest.skip("this file system does not record reads in the access time")
    assert os.stat(root / "huge.png").st_atime == 1000  # not a byte was read


def test_read_file_url_refuses_a_file_past_the_limit(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    (root / "big.png").write_bytes(b"x" * (MAX + 1))
    with pytest.raises(BodyTooLargeError):
        read_file_url((root / "big.png").as_uri(), str(root), MAX)
    (root / "fits.png").write_bytes(b"x" * MAX)
    assert len(read_file_url((root / "fits.png").as_uri(), str(root), MAX)) == MAX


def test_read_file_url_refuses_query_and_fragment(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    with pytest.raises(InvalidRequestError) as info:
        read_file_url((root / "sub" / "cat.png").as_uri() + "?x=1", str(root), MAX)
    assert info.value.status == 400 and info.value.code == "INVALID_MEDIA"
