"""How many threads the embedded model gets for its next call: the cores other processes leave.

llama.cpp's threads wait for each other at every operation of every token. When another process
keeps a core busy, one of two threads is often descheduled and the other waits for it: measured
on two cores beside a process busy on both, a reasoning step took 33.0 s with two threads and
23.1 s with one (decode 10.3 against 25.2 tokens/s); alone, two threads are faster (9.3 s against
14.3 s). So each call takes as many threads as there are cores that other processes did not use
over the last moments (at least one). This process's own use does not count: its in-process
ingestion waits while the model generates (core/foreground.py).

Linux only (/proc/stat); elsewhere every core is used.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

# A sample older than this says nothing about now; one this young is too noisy to use.
STALE_S = 30.0
FRESH_S = 0.5
# The window sampled when there is no usable earlier sample.
PROBE_S = 0.1


class IdleCores:
    def __init__(self, cores: int | None = None, stat: Path = Path("/proc/stat")) -> None:
        self.cores = cores or os.cpu_count() or 1
        self._stat = stat
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._lock = threading.Lock()
        self._last: tuple[float, float, float] | None = None

    def _sample(self) -> tuple[float, float, float] | None:
        """(monotonic seconds, seconds of busy CPU time on the machine, this process's CPU
        seconds), or None where /proc/stat cannot be read."""
        try:
            fields = self._stat.read_text().split("\n", 1)[0].split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        ticks = [int(x) for x in fields[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        busy = sum(ticks[:8]) - idle  # guest time is already counted in user time
        own = os.times()
        return time.monotonic(), busy / self._tick, own.user + own.system

    def others_busy(self) -> float | None:
        """Cores' worth of CPU time other processes used lately, or None if unknown."""
        with self._lock:
            now = self._sample()
            if now is None:
                return None
            last = self._last
            if last is None or not FRESH_S <= now[0] - last[0] <= STALE_S:
                time.sleep(PROBE_S)
                last, now = now, self._sample()
                if now is None:
                    return None
            self._last = now
        wall = now[0] - last[0]
        return max((now[1] - last[1]) - (now[2] - last[2]), 0.0) / wall

    def threads(self) -> int:
        """The cores others left idle, at least one."""
        busy = self.others_busy()
        if busy is None:
            return self.cores
        return max(1, min(self.cores, round(self.cores - busy)))
