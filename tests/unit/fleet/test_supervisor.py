import asyncio
import os
import sys
from pathlib import Path

import pytest

from modelfleet.errors import ModelStartError
from modelfleet.fleet.logs import ModelLog
from modelfleet.fleet.supervisor import EngineProcess

# A parent that forks a grandchild sharing its process group, then sleeps.
FAMILY = """
import os, sys, time
print("parent up", flush=True)
if os.fork() == 0:
    time.sleep(600)
    sys.exit(0)
time.sleep(600)
"""


async def test_supervisor_captures_output_and_stops_the_whole_group(tmp_path: Path) -> None:
    log = ModelLog(tmp_path / "e.log")
    proc = EngineProcess([sys.executable, "-c", FAMILY], dict(os.environ), log)
    await proc.spawn()
    assert proc.pid is not None
    for _ in range(100):
        if any(line.message == "parent up" for line in log.ring):
            break
        await asyncio.sleep(0.05)
    assert any(line.message == "parent up" for line in log.ring)
    assert os.getpgid(proc.pid) == proc.pid  # its own group
    await proc.stop(grace=1)
    for _ in range(40):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the engine's process group is still alive")


async def test_supervisor_launch_of_missing_binary_is_a_start_error(tmp_path: Path) -> None:
    log = ModelLog(tmp_path / "e.log")
    proc = EngineProcess(["/nonexistent/engine"], {}, log)
    with pytest.raises(ModelStartError, match="cannot launch"):
        await proc.spawn()
