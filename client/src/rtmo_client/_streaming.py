"""The non-I/O half of ``stream``: grouping images into requests, and the rule that keeps results in order.

Both clients' ``stream`` differ only in how they start requests and wait for them (a thread pool and futures, or
asyncio tasks); which requests to send together, when another may go and which results are ready is decided here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

from rtmo_client.images import EncodedImage, Frame, Payload
from rtmo_client.results import PoseResult


class Answer(Protocol):
    """A request in flight: a ``concurrent.futures.Future`` or an ``asyncio.Task`` of its results."""

    def done(self) -> bool: ...

    def result(self) -> list[PoseResult]: ...


A = TypeVar("A", bound=Answer)


def validate_options(*, max_in_flight: int, batch_size: int) -> None:
    """Check streaming options.

    Raises:
        ValueError: a non-positive ``max_in_flight`` or ``batch_size``.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight={max_in_flight}; accepted: an integer >= 1")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; accepted: an integer >= 1")


class Batcher:
    """Groups consecutive payloads into requests of at most ``batch_size`` rows that may share a request.

    A run is handed out as soon as it is full or the next payload cannot join it (other kind or frame shape), so
    at most ``batch_size`` payloads wait; both clients' streams feed it one payload at a time.
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._run: list[Payload] = []

    def add(self, payload: Payload) -> list[Payload] | None:
        """Queue ``payload``; return a run ready to send, or None."""
        if self._run and not _compatible(self._run[-1], payload):
            # Only possible with batch_size > 1 (a run of 1 is sent at once), so the new run is not yet full.
            ready, self._run = self._run, [payload]
            return ready
        self._run.append(payload)
        if len(self._run) < self.batch_size:
            return None
        ready, self._run = self._run, []
        return ready

    def flush(self) -> list[Payload] | None:
        """The last, partial run, or None."""
        ready, self._run = self._run or None, []
        return ready


def batches(payloads: Iterable[Payload], batch_size: int) -> Iterator[list[Payload]]:
    """Requests of at most ``batch_size`` compatible consecutive payloads (see :class:`Batcher`)."""
    batcher = Batcher(batch_size)
    for payload in payloads:
        if (run := batcher.add(payload)) is not None:
            yield run
    if (run := batcher.flush()) is not None:
        yield run


def _compatible(a: Payload, b: Payload) -> bool:
    if isinstance(a, Frame) and isinstance(b, Frame):
        return a.array.shape == b.array.shape
    return isinstance(a, EncodedImage) and isinstance(b, EncodedImage)


class OrderedWindow(Generic[A]):
    """The requests of a stream in flight, oldest first, and when another may be sent.

    A request may go when fewer than ``max_in_flight`` are unanswered and fewer than ``2 * max_in_flight`` results
    are held: answers that overtook a slower earlier request wait in order without stalling the others.
    """

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.pending: deque[A] = deque()

    def answered(self) -> Iterator[PoseResult]:
        """Take the results of the answered requests at the head, in order; a failed one raises its error."""
        while self.pending and self.pending[0].done():
            yield from self.pending.popleft().result()

    def blocking(self) -> list[A]:
        """The unanswered requests when one must finish before another may be sent, else []; call after
        :meth:`answered`, so that the head is unanswered."""
        unanswered = [answer for answer in self.pending if not answer.done()]
        if len(unanswered) < self.max_in_flight and len(self.pending) < 2 * self.max_in_flight:
            return []
        return unanswered
