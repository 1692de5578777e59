"""The committed dashboard build (``src/modelfleet/api/ui_dist``) is what ``web/`` builds.

``make serve`` serves the committed files and needs no Node.js, so they must not fall
behind the sources. This test builds ``web/`` afresh into a temporary directory (Vite's
output is deterministic: names carry content hashes) and compares it with the files in
``ui_dist``; then it asks git whether those files are committed as they are. ``make
test`` runs ``npm ci`` and ``npm run build`` first (target ``web``), which rewrites
``ui_dist`` from the sources: a stale commit then shows up as a git change here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

WEB = REPO / "web"
DIST = REPO / "src" / "modelfleet" / "api" / "ui_dist"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_ui_dist_matches_a_fresh_build(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.fail("npx is not on PATH: the dashboard is built with Node.js (make web)")
    if not (WEB / "node_modules" / ".package-lock.json").exists():
        pytest.fail("web/node_modules is missing: run `make web` (npm ci from the lockfile)")
    out = tmp_path / "dist"
    build = subprocess.run(
        [npx, "--no-install", "vite", "build", "--outDir", str(out), "--emptyOutDir",
         "--logLevel", "warn"],
        cwd=WEB, capture_output=True, text=True, timeout=180)
    assert build.returncode == 0, build.stdout + build.stderr
    fresh, shipped = _files(out), _files(DIST)
    assert "index.html" in fresh
    assert sorted(fresh) == sorted(shipped), "ui_dist is stale: run `make web` and commit it"
    changed = [name for name in fresh if fresh[name] != shipped[name]]
    assert not changed, f"ui_dist is stale ({changed}): run `make web` and commit it"

    if not (REPO / ".git").exists():
        return  # a source tree without its history: the comparison above is all there is
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", str(DIST)],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert status.stdout == "", f"ui_dist differs from what is committed:\n{status.stdout}"
