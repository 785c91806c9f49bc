"""One :class:`~rtmo.runtime.tracking.tracker.Tracker` per sequence (Triton correlation id), created on START,
freed on END or when the sequence has been idle for longer than the sequence batcher keeps it (looked for on every
frame of any sequence: Triton tells a model nothing when a sequence idles out, and an idle server holds no work).

Triton's sequence batcher already refuses a request without START for a sequence it does not know; the checks
here cover what it cannot see (a model instance that restarted, a frame of another size) and keep the refusals
per request: a bad frame changes nothing, and every other sequence goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rtmo.runtime.tracking.tracker import Assignment, Detections, Tracker
from rtmo_contract import InvalidRequestError, TrackingParameters

__all__ = ["SEQUENCE_END", "SEQUENCE_START", "Sequences"]

# TRITONSERVER_RequestFlag bits of a request's flags().
SEQUENCE_START = 1
SEQUENCE_END = 2


@dataclass
class _Sequence:
    tracker: Tracker
    image_size: tuple[int, int]
    last_used_s: float


class Sequences:
    """The live sequences of one model instance."""

    def __init__(self, *, sigmas: np.ndarray, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.idle_s = idle_s
        self.clock = clock
        self.live: dict[int | str, _Sequence] = {}

    def track(
        self,
        sequence_id: int | str,
        *,
        flags: int,
        people: Detections,
        image_size: tuple[int, int],
        parameters: TrackingParameters,
    ) -> Assignment:
        """One frame of sequence ``sequence_id``.

        Raises:
            InvalidRequestError: no sequence id, a sequence this instance does not know without START, or a frame
                whose size differs from the sequence's first frame.
        """
        now = self.clock()
        self._forget_idle(now)
        if not sequence_id:
            raise InvalidRequestError(
                "sequence id: none; the tracker needs each video's frames in a sequence "
                "(a nonzero correlation id, START on the first frame, END on the last)"
            )
        end = bool(flags & SEQUENCE_END)
        try:
            if flags & SEQUENCE_START:
                self.live[sequence_id] = _Sequence(Tracker(sigmas=self.sigmas), image_size, now)
            sequence = self.live.get(sequence_id)
            if sequence is None:
                raise InvalidRequestError(
                    f"sequence {sequence_id}: unknown to the tracker (it ended, idled for over {self.idle_s:g} s, or "
                    "the server restarted), so its tracks are lost; start it again with the START flag"
                )
            if image_size != sequence.image_size:
                raise InvalidRequestError(
                    f"frame of sequence {sequence_id}: {image_size[0]}x{image_size[1]} pixels, but the sequence "
                    f"started with {sequence.image_size[0]}x{sequence.image_size[1]}; accepted: frames of one size "
                    "per sequence (start a new sequence for the new size)"
                )
            sequence.last_used_s = now
            return sequence.tracker.update(people, parameters)
        finally:
            if end:
                self.live.pop(sequence_id, None)

    def _forget_idle(self, now: float) -> None:
        stale = [key for key, sequence in self.live.items() if now - sequence.last_used_s > self.idle_s]
        for key in stale:
            del self.live[key]
