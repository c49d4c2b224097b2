"""scripts/setup.sh installs an extra set only when its stamp is missing or pyproject.toml is
newer; the test set counts for the base set, so `run.sh` after `test.sh` reinstalls nothing.
scripts/build_llama_cpp.sh builds llama-cpp-python without AMX on a CPU that advertises it,
once per version and flags.

Run on copies of the scripts in a scratch checkout whose .venv/bin/python is a stub that only
records its arguments and CMAKE_ARGS, and for `pip wheel` leaves an empty wheel (no pip runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO

STUB_PYTHON = """#!/bin/sh
echo "$@" "CMAKE_ARGS=${CMAKE_ARGS:-}" >> "$(dirname "$0")/../../pip.log"
if [ "$3" = "wheel" ]; then
  while [ "$#" -gt 0 ]; do
    [ "$1" = "-w" ] && mkdir -p "$2" && touch "$2/llama_cpp_python-0.3.36-cp3-none-any.whl"
    shift
  done
fi
"""


def checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    for script in ("setup.sh", "build_llama_cpp.sh"):
        shutil.copy(REPO / "scripts" / script, tmp_path / "scripts" / script)
    pyproject = '[project]\nname = "x"\ndependencies = ["llama-cpp-python==0.3.36"]\n'
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "cpuinfo").write_text("flags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    os.utime(tmp_path / "pyproject.toml", (1_000_000, 1_000_000))
    return tmp_path


def run_script(root: Path, script: str, *args: str, **env: str) -> list[str]:
    """Run a script of the scratch checkout; the pip lines it ran."""
    log = root / "pip.log"
    log.unlink(missing_ok=True)
    environ = {
        **{k: v for k, v in os.environ.items() if k != "RAG_LLAMA_AMX"},
        "XDG_CACHE_HOME": str(root / "cache"),
        "RAG_CPUINFO": str(root / "cpuinfo"),
        "CMAKE_ARGS": "",
        **env,
    }
    subprocess.run(["bash", str(root / "scripts" / script), *args], check=True, env=environ)
    return log.read_text().splitlines() if log.exists() else []


def setup(root: Path, *args: str) -> list[str]:
    """Run setup.sh; the installs it made (pip lines with -e)."""
    lines = run_script(root, "setup.sh", *args)
    return [line.removesuffix(" CMAKE_ARGS=") for line in lines if " -e " in line]


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


def wheel_builds(lines: list[str]) -> list[str]:
    return [line.split("CMAKE_ARGS=", 1)[1] for line in lines if " pip wheel " in f" {line}"]


def test_llama_cpp_is_built_without_amx_where_the_cpu_advertises_it(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    lines = run_script(root, "build_llama_cpp.sh")
    assert wheel_builds(lines) == [
        " -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'"
        " -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'"
    ]
    assert "llama-cpp-python==0.3.36" in lines[0]
    assert any("install" in line and "--force-reinstall" in line for line in lines)
    # built once: the second run installs the wheel it built
    again = run_script(root, "build_llama_cpp.sh")
    assert wheel_builds(again) == []
    assert any("--force-reinstall" in line for line in again)


def test_llama_cpp_keeps_native_flags_without_amx_or_when_asked(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    assert wheel_builds(run_script(root, "build_llama_cpp.sh", RAG_LLAMA_AMX="1")) == [""]
    (root / "cpuinfo").write_text("flags\t\t: fpu avx2 avx512f\n")
    assert wheel_builds(run_script(root, "build_llama_cpp.sh", CMAKE_ARGS="-DGGML_CUDA=on")) == [
        "-DGGML_CUDA=on"
    ]


def test_llama_cpp_goes_into_the_named_environment(tmp_path: Path) -> None:
    """The Docker build installs into /opt/venv, not .venv (RAG_BUILD_PYTHON)."""
    root = checkout(tmp_path)
    other = root / "opt" / "bin" / "python"
    other.parent.mkdir(parents=True)
    (root / ".venv" / "bin" / "python").rename(other)
    lines = run_script(root, "build_llama_cpp.sh", RAG_BUILD_PYTHON=str(other))
    assert wheel_builds(lines) and any("--force-reinstall" in line for line in lines)
