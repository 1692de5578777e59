from pathlib import Path

from modelfleet.fleet.logs import ModelLog


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
