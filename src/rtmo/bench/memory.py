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

    def report(self) -> dict[str, Any]:
        """First, last and peak RSS, growth (last − first) and the least-squares slope in MiB per minute."""
        if not self.samples:
            raise ValueError("no RSS samples were taken")
        seconds = np.array([s for s, _ in self.samples])
        mib = np.array([b for _, b in self.samples]) / 2**20
        slope = float(np.polyfit(seconds / 60.0, mib, 1)[0]) if len(self.samples) > 1 and np.ptp(seconds) > 0 else 0.0
        return {
            "pid": self.pid,
            "samples": len(self.samples),
            "rss_start_mib": round(float(mib[0]), 1),
            "rss_end_mib": round(float(mib[-1]), 1),
            "rss_max_mib": round(float(mib.max()), 1),
            "growth_mib": round(float(mib[-1] - mib[0]), 1),
            "slope_mib_per_min": round(slope, 3),
            "series_mib": [[round(float(s), 1), round(float(m), 1)] for s, m in zip(seconds, mib)],
        }
