"""Is the server able to serve? Readiness of the server and both ensembles, then a tiny frame through them.

Readiness alone can lie (a model whose Python stub died stays READY until it is reloaded), so the check ends with
a real request: an 8x8 black frame through ``rtmo_frames``, which crosses every step (preprocess, engine,
postprocess and its keypoint decoder). That request is the expensive part; a :class:`HealthCache` lets frequent
probes (Kubernetes, Docker) reuse a recent success for ``max_age_s`` while readiness is still asked every time.
A failure is never cached, so a healed server is reported healthy at the next probe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtmo_client.client import Client
from rtmo_client.errors import RTMOClientError

__all__ = ["PROBE_FRAME_SIZE", "HealthCache", "HealthReport", "check_health"]

PROBE_FRAME_SIZE = 8  # pixels per side: the smallest work that still runs the whole pipeline
READINESS_TIMEOUT_S = 1.0  # a server that is not ready is reported at once, not waited for


@dataclass(frozen=True)
class HealthReport:
    """The outcome of one health check.

    Attributes:
        healthy: Ready, and the probe frame was served.
        reason: What failed (empty when healthy).
        inference: ``"served"`` when the probe frame was sent now, ``"cached"`` when a recent success was reused,
            ``"not sent"`` when readiness already failed.
    """

    healthy: bool
    reason: str
    inference: str


class HealthCache:
    """The time of the last successful probe inference of one server, in a file only its owner may write.

    Args:
        path: The file (created on the first success).
        max_age_s: How long a success is reused; 0 disables the cache.
    """

    def __init__(self, path: Path, *, max_age_s: float) -> None:
        if max_age_s < 0:
            raise ValueError(f"max_age_s={max_age_s}; accepted: seconds >= 0 (0 disables the cache)")
        self.path = Path(path)
        self.max_age_s = max_age_s

    @staticmethod
    def default_path(url: str) -> Path:
        """``<tmp>/rtmo-client-health-<uid>-<hash of url>.json``: one file per user and server."""
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"rtmo-client-health-{os.getuid()}-{digest}.json"

    def fresh(self, url: str, *, now_s: float | None = None) -> bool:
        """Whether a success for ``url`` younger than ``max_age_s`` is recorded (a file of another user never is)."""
        if self.max_age_s == 0:
            return False
        try:
            if self.path.stat().st_uid != os.getuid():
                return False
            record = json.loads(self.path.read_text())
            served_at_s = float(record["served_at_s"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        now_s = time.time() if now_s is None else now_s
        return record.get("url") == url and 0 <= now_s - served_at_s < self.max_age_s

    def record_success(self, url: str, *, now_s: float | None = None) -> None:
        """Remember a served probe (written atomically: concurrent probes read the old or the new record)."""
        if self.max_age_s == 0:
            return
        record = {"url": url, "served_at_s": time.time() if now_s is None else now_s}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(record, file)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def check_health(client: Client, *, cache: HealthCache | None = None) -> HealthReport:
    """Ask readiness of the server and both ensembles, then (unless cached) serve the probe frame.

    Args:
        client: Connected to the server; its ``timeout_s`` bounds the probe request.
        cache: Where a recent success is kept; None sends the frame every time.

    Returns:
        The report; errors of the server are reported in it, never raised.
    """
    try:
        client.wait_until_ready(READINESS_TIMEOUT_S)
    except RTMOClientError as error:
        return HealthReport(healthy=False, reason=error.message, inference="not sent")
    if cache is not None and cache.fresh(client.url):
        return HealthReport(healthy=True, reason="", inference="cached")
    frame = np.zeros((PROBE_FRAME_SIZE, PROBE_FRAME_SIZE, 3), np.uint8)
    try:
        result = client.estimate(frame, channels="bgr")
    except RTMOClientError as error:
        kind = error.status or type(error).__name__
        reason = f"probe frame to {client.url} failed: {kind}: {error.message}"
        return HealthReport(healthy=False, reason=reason, inference="served")
    if result.image_size not in (None, (PROBE_FRAME_SIZE, PROBE_FRAME_SIZE)):
        reason = f"probe frame to {client.url} answered for an image of {result.image_size}"
        return HealthReport(healthy=False, reason=reason, inference="served")
    if cache is not None:
        cache.record_success(client.url)
    return HealthReport(healthy=True, reason="", inference="served")
