"""scripts/setup.sh installs an extra set only when its stamp is missing or pyproject.toml is
newer; the test set counts for the base set, so `run.sh` after `test.sh` reinstalls nothing.

Run on a copy of the script in a scratch checkout whose .venv/bin/python is a stub that only
records its arguments (no pip runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO


def checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/../../pip.log"\n')
    python.chmod(0o755)
    os.utime(tmp_path / "pyproject.toml", (1_000_000, 1_000_000))
    return tmp_path


def setup(root: Path, *args: str) -> list[str]:
    """Run setup.sh; the installs it made (pip lines with -e)."""
    log = root / "pip.log"
    log.unlink(missing_ok=True)
    subprocess.run(["bash", str(root / "scripts" / "setup.sh"), *args], check=True)
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if " -e " in line]


def test_each_set_installs_once_and_test_covers_base(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    assert setup(root, "test") == ["-m pip install --quiet -e .[test,train]"]
    assert setup(root) == [], "run.sh after test.sh: the test set includes the base set"
    assert setup(root, "test") == []


def test_base_alone_then_test_installs_the_test_tools(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    assert setup(root) == ["-m pip install --quiet -e ."]
    assert setup(root) == []
    assert setup(root, "test") == ["-m pip install --quiet -e .[test,train]"]


def test_a_changed_pyproject_reinstalls(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    setup(root, "test")
    for stamp in (root / ".venv").glob(".installed-*"):
        os.utime(stamp, (2_000_000, 2_000_000))
    os.utime(root / "pyproject.toml", (3_000_000, 3_000_000))
    assert setup(root) == ["-m pip install --quiet -e ."]
    assert setup(root, "test") == ["-m pip install --quiet -e .[test,train]"]
