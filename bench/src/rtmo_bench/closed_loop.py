"""Closed-loop load: ``concurrency`` threads, each sending its next request as soon as the last one returned.

Each thread builds its own caller (its own gRPC channel, or a shared ONNX Runtime session, whose ``run``
releases the GIL), makes one untimed call, waits for the others, then calls it in a loop until the deadline.
Latency is per call; images/s counts the images of the calls that finished inside the window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: A caller sends call number ``i`` and returns how many images it carried; it raises on failure.
Caller = Callable[[int], int]


@dataclass
class LoadResult:
    """Outcome of one closed-loop run."""

    concurrency: int
    elapsed_s: float
    latencies_ms: list[float] = field(default_factory=list)
    images: int = 0
    failures: int = 0
    first_error: str | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def images_per_s(self) -> float:
        return self.images / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @classmethod
    def merged(cls, results: Sequence[LoadResult]) -> LoadResult:
        """Several runs at the same concurrency as one (e.g. rounds interleaved with other measurements)."""
        if not results or len({r.concurrency for r in results}) != 1:
            raise ValueError("merge one or more results of the same concurrency")
        return cls(
            concurrency=results[0].concurrency,
            elapsed_s=sum(r.elapsed_s for r in results),
            latencies_ms=[ms for r in results for ms in r.latencies_ms],
            images=sum(r.images for r in results),
            failures=sum(r.failures for r in results),
            first_error=next((r.first_error for r in results if r.first_error), None),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "images": self.images,
            "failures": self.failures,
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(self.images_per_s, 3),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            **({"first_error": self.first_error} if self.first_error else {}),
        }


def run_closed_loop(
    make_caller: Callable[[int], Caller],
    *,
    concurrency: int,
    duration_s: float,
    on_tick: Callable[[], None] | None = None,
    tick_s: float = 1.0,
) -> LoadResult:
    """Run ``concurrency`` threads of ``make_caller(thread_index)`` for ``duration_s`` seconds.

    Args:
        make_caller: builds one thread's caller (called inside that thread).
        concurrency: threads, ≥ 1.
        duration_s: measured window, > 0; calls still running at the deadline finish but are not counted.
        on_tick: called from the calling thread about every ``tick_s`` seconds during the window (e.g. to
            sample memory).
        tick_s: period of ``on_tick``.

    Returns:
        Latencies, images and failures of the calls that finished inside the window.

    Raises:
        ValueError: for a concurrency below 1 or a non-positive duration.
        RuntimeError: if a thread could not build its caller or its untimed first call failed.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency={concurrency}; give 1 or more")
    if duration_s <= 0:
        raise ValueError(f"duration_s={duration_s}; give a positive number of seconds")
    result = LoadResult(concurrency=concurrency, elapsed_s=0.0)
    lock = threading.Lock()
    ready = threading.Barrier(concurrency + 1)
    setup_errors: list[str] = []
    window: dict[str, float] = {}

    def worker(index: int) -> None:
        try:
            call = make_caller(index)
            call(0)
        except Exception as error:  # reported by the main thread, which must not wait forever
            setup_errors.append(f"thread {index}: {type(error).__name__}: {error}")
            ready.abort()
            return
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        i = 1
        while True:
            start = time.perf_counter()
            if start >= window["end"]:
                return
            try:
                images, error = call(i), None
            except Exception as exc:  # a failed request is a figure, not a crash
                images, error = 0, f"{type(exc).__name__}: {exc}"
            stop = time.perf_counter()
            i += 1
            if stop > window["end"]:
                return
            with lock:
                if error is None:
                    result.latencies_ms.append(1000.0 * (stop - start))
                    result.images += images
                else:
                    result.failures += 1
                    result.first_error = result.first_error or error

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        window["end"] = float("inf")
        ready.wait()
    except threading.BrokenBarrierError:
        for thread in threads:
            thread.join()
        raise RuntimeError("load threads could not start: " + "; ".join(setup_errors)) from None
    begin = time.perf_counter()
    window["end"] = begin + duration_s
    while (now := time.perf_counter()) < window["end"]:
        time.sleep(min(tick_s, window["end"] - now))
        if on_tick is not None:
            on_tick()
    result.elapsed_s = duration_s
    for thread in threads:
        thread.join()
    return result
