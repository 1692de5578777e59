import time
from pathlib import Path

from modelfleet.fleet.logs import CLOSED, LogLine, ModelLog


def test_log_ring_is_bounded_and_file_survives(tmp_path: Path) -> None:
    log = ModelLog(tmp_path / "m.log", ring_lines=5)
    for i in range(12):
        log.append(f"line {i}")
    assert [entry.message for entry in log.tail(100)] == [f"line {i}" for i in range(7, 12)]
    assert [entry.message for entry in log.tail(2)] == ["line 10", "line 11"]
    log.close()
    again = ModelLog(tmp_path / "m.log", ring_lines=3)
    assert [entry.message for entry in again.tail(10)] == ["line 9", "line 10", "line 11"]
    again.close()


def test_log_rotates_by_size(tmp_path: Path) -> None:
    log = ModelLog(tmp_path / "m.log", max_bytes=2000, backups=2)
    for i in range(400):
        log.append(f"message number {i:04d} " + "x" * 20)
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["m.log", "m.log.1", "m.log.2"]
    assert all(p.stat().st_size < 2200 for p in tmp_path.iterdir())


def test_log_subscribers_get_new_lines(tmp_path: Path) -> None:
    log = ModelLog(tmp_path / "m.log")
    queue = log.subscribe()
    log.append("hello")
    assert queue.get_nowait().message == "hello"
    log.unsubscribe(queue)
    log.append("after")
    assert queue.empty()
    log.close()


def test_infer_level() -> None:
    from modelfleet.fleet.logs import infer_level

    assert infer_level("ERROR: cannot bind") == "ERROR"
    assert infer_level("Traceback (most recent call last):") == "ERROR"
    assert infer_level("an error happened") == "ERROR"
    assert infer_level("WARNING: slow") == "WARNING"
    assert infer_level("UserWarning: deprecated") == "WARNING"
    assert infer_level("warn: low memory") == "WARNING"
    assert infer_level("[modelfleet] sim ready in 0.3s") == "INFO"
    assert LogLine(0.0, "fatal: boom").level == "ERROR"


def _old(path: Path, ages_s: list[float]) -> None:
    """Write lines with the given ages (seconds) straight into a log file."""
    now = time.time()
    with path.open("a", encoding="utf-8") as f:
        for i, age in enumerate(ages_s):
            f.write(f"{now - age:.3f} old {i}\n")


def test_clear_all(tmp_path: Path) -> None:
    log = ModelLog(tmp_path / "m.log", max_bytes=300, backups=2)
    for i in range(20):
        log.append(f"line {i:02d} " + "x" * 20)
    assert (tmp_path / "m.log.1").exists()
    assert log.clear(0) == 20
    assert log.tail(100) == []
    assert [p.name for p in tmp_path.iterdir()] == ["m.log"]
    assert (tmp_path / "m.log").read_text() == ""
    log.append("after")  # still writable
    log.close()
    again = ModelLog(tmp_path / "m.log")
    assert [entry.message for entry in again.tail(10)] == ["after"]
    again.close()


def test_clear_keeps_recent_minutes(tmp_path: Path) -> None:
    path = tmp_path / "m.log"
    _old(path, [3600, 1800, 30])  # one hour, half an hour, half a minute old
    log = ModelLog(path)
    log.append("fresh")
    assert log.clear(10) == 2
    assert [entry.message for entry in log.tail(10)] == ["old 2", "fresh"]
    log.close()
    again = ModelLog(path)
    assert [entry.message for entry in again.tail(10)] == ["old 2", "fresh"]
    assert again.clear(10) == 0
    again.close()


def test_clear_counts_lines_only_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "m.log"
    _old(path, [7200] * 10)
    log = ModelLog(path, ring_lines=3)  # the ring holds 3 of the 10
    assert log.clear(60) == 10
    assert path.read_text() == ""
    log.close()


async def test_close_ends_followers(tmp_path: Path) -> None:
    log = ModelLog(tmp_path / "m.log")
    queue = log.subscribe()
    assert log.subscriber_count == 1
    log.close()
    assert log.closed and queue.get_nowait() is CLOSED
    log.unsubscribe(queue)
    assert log.subscriber_count == 0
