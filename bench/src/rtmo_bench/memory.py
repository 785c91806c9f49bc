"""Server memory over time: resident set size of a process and its process group, read from ``/proc``.

The Triton server runs each Python-backend model instance as a separate stub process in its process group, so
its memory is the sum over the group (shared pages are counted once per process, which overstates the total
but not its growth).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtmo.serving.tritonserver import live_process_group_members


def process_rss_bytes(pid: int) -> int:
    """``VmRSS`` of one process in bytes; 0 when it has exited (or is a zombie without memory)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def process_group_members(pid: int) -> list[int]:
    """Live processes in ``pid``'s process group (the server and its backend stubs); empty once it exited."""
    try:
        return live_process_group_members(os.getpgid(pid))
    except ProcessLookupError:
        return []


def group_rss_bytes(pid: int) -> int:
    """Sum of ``VmRSS`` over ``pid``'s process group."""
    return sum(process_rss_bytes(member) for member in process_group_members(pid))


@dataclass
class RssSampler:
    """Collects (seconds since start, RSS bytes) samples of a server's process group."""

    pid: int
    started_s: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, int]] = field(default_factory=list)

    def sample(self) -> int:
        rss = group_rss_bytes(self.pid)
        self.samples.append((time.monotonic() - self.started_s, rss))
        return rss

    def report(self, *, warmup_s: float = 0.0) -> dict[str, Any]:
        """RSS before load, after ``warmup_s``, at the end and at peak; growth and least-squares slopes after warm-up.

        The first requests grow the server once (ONNX Runtime's arena, the stubs' shared memory, allocator pools);
        a leak is growth that goes on after that, so growth and slopes start at the first sample at or after
        ``warmup_s``; ``slope_last_half_mib_per_min`` near zero means memory has levelled off.
        """
        if not self.samples:
            raise ValueError("no RSS samples were taken")
        seconds = np.array([s for s, _ in self.samples])
        mib = np.array([b for _, b in self.samples]) / 2**20
        after = seconds >= min(warmup_s, seconds[-1])
        last_half = seconds >= seconds[after][0] + (seconds[-1] - seconds[after][0]) / 2
        start = float(mib[after][0])
        return {
            "pid": self.pid,
            "samples": len(self.samples),
            "warmup_s": warmup_s,
            "rss_idle_mib": round(float(mib[0]), 1),
            "rss_start_mib": round(start, 1),
            "rss_end_mib": round(float(mib[-1]), 1),
            "rss_max_mib": round(float(mib.max()), 1),
            "growth_mib": round(float(mib[-1]) - start, 1),
            "slope_mib_per_min": _slope_per_min(seconds[after], mib[after]),
            "slope_last_half_mib_per_min": _slope_per_min(seconds[last_half], mib[last_half]),
            "series_mib": [[round(float(s), 1), round(float(m), 1)] for s, m in zip(seconds, mib)],
        }


def _slope_per_min(seconds: np.ndarray, mib: np.ndarray) -> float:
    if len(seconds) < 2 or np.ptp(seconds) == 0:
        return 0.0
    return round(float(np.polyfit(seconds / 60.0, mib, 1)[0]), 3)
