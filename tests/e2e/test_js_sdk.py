"""The JavaScript SDK (``sdk/js``): node's own test runner against a real gateway.

Node is part of the machine's toolchain, so a missing ``node`` fails this test
rather than skipping it. The JS tests read the gateway's address from
``MODELFLEET_URL`` and use the simulator model ``sim-a`` (alias ``a``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, simulator_model, start_gateway

SDK = REPO / "sdk" / "js"
NODE_TIMEOUT_S = 120


def test_js_sdk_against_gateway(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the JavaScript SDK's tests need Node.js 18 or later")
    gw = start_gateway(tmp_path, [simulator_model("sim-a", aliases=["a"]),
                                  simulator_model("sim-b")])
    try:
        out = subprocess.run(
            [node, "--test", "test/"], cwd=SDK, capture_output=True, text=True,
            timeout=NODE_TIMEOUT_S, env={**os.environ, "MODELFLEET_URL": gw.url},
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"node --test ran past {NODE_TIMEOUT_S}s:\n{exc.stdout!s}")
    finally:
        gw.stop()
    assert out.returncode == 0, (
        f"node --test failed ({out.returncode}):\n{out.stdout}\n{out.stderr}\n"
        f"-- gateway log --\n{gw.log()[-4000:]}"
    )
    passed = re.search(r"^# pass (\d+)$", out.stdout, re.MULTILINE)
    assert passed and int(passed.group(1)) > 0, f"node ran no tests:\n{out.stdout}"
