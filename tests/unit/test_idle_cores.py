"""Thread choice from the machine's CPU use (generation/llm/idle_cores.py), on a written
/proc/stat."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.llm import idle_cores
from generation.llm.idle_cores import IdleCores


def write_stat(path: Path, busy_ticks: int, idle_ticks: int) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    path.write_text(f"cpu {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(idle_cores.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(idle_cores.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    return now


def test_all_cores_on_a_quiet_machine(tmp_path: Path, clock: list[float]) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, busy_ticks=1000, idle_ticks=5000)
    cores = IdleCores(cores=2, stat=stat)
    assert cores.threads() == 2  # probed over a short window: nothing changed


def test_one_thread_beside_a_process_busy_on_both_cores(tmp_path: Path, clock: list[float]) -> None:
    stat = tmp_path / "stat"
    tick = IdleCores(cores=2, stat=stat)._tick
    write_stat(stat, busy_ticks=1000, idle_ticks=5000)
    cores = IdleCores(cores=2, stat=stat)
    assert cores.threads() == 2
    # Five seconds later, both cores were busy the whole time (and not with this process).
    clock[0] += 5
    write_stat(stat, busy_ticks=1000 + 10 * tick, idle_ticks=5000)
    assert cores.threads() == 1
    # Then quiet again.
    clock[0] += 5
    write_stat(stat, busy_ticks=1000 + 10 * tick, idle_ticks=5000 + 10 * tick)
    assert cores.threads() == 2


def test_every_core_where_the_machine_cannot_tell(tmp_path: Path) -> None:
    assert IdleCores(cores=4, stat=tmp_path / "missing").threads() == 4
