"""Per-model cost from Triton's cumulative inference statistics, measured as the difference of two snapshots.

Triton counts, per model, the requests it answered and nanoseconds spent queued and computing
(``client.get_inference_statistics``). Request-level figures (``inference_stats``) charge every request the whole
duration of the batch it ran in; per-execution figures (``batch_stats``) count each batch once, so dividing
those by the images gives what one image really costs when the dynamic batcher merges requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, astuple, dataclass
from typing import Any

COMPUTE_PARTS = ("compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of one model (nanoseconds and counts since the server started)."""

    requests: int
    failures: int
    images: int
    executions: int
    request_ns: int
    queue_ns: int
    compute_ns: int
    batch_compute_ns: int


@dataclass(frozen=True)
class StageFigures:
    """What one model cost between two snapshots.

    Attributes:
        requests: Requests answered successfully.
        failures: Requests that failed.
        images: Batch rows inferred (``inference_count``).
        executions: Model executions; ``images / executions`` is the average dynamic batch.
        request_ms: Mean time a request spent in the model (queue + compute), as Triton reports it.
        queue_ms: Mean time a request waited in the model's queue.
        compute_ms: Mean compute time charged to a request (the whole batch's duration when batched).
        compute_ms_per_image: Compute time of all executions divided by the images: one image's real cost.
    """

    requests: int
    failures: int
    images: int
    executions: int
    request_ms: float
    queue_ms: float
    compute_ms: float
    compute_ms_per_image: float

    @property
    def mean_batch(self) -> float:
        return self.images / self.executions if self.executions else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()},
            "mean_batch": round(self.mean_batch, 2),
        }


def _ns(stats: Mapping[str, Any], key: str) -> int:
    return int(stats.get(key, {}).get("ns", 0))


def parse_counters(model_stats: Mapping[str, Any]) -> Counters:
    """Read one entry of ``get_inference_statistics(as_json=True)["model_stats"]`` (int64 fields arrive as strings)."""
    inference = model_stats.get("inference_stats", {})
    batch_compute = sum(_ns(batch, part) for batch in model_stats.get("batch_stats", []) for part in COMPUTE_PARTS)
    return Counters(
        requests=int(inference.get("success", {}).get("count", 0)),
        failures=int(inference.get("fail", {}).get("count", 0)),
        images=int(model_stats.get("inference_count", 0)),
        executions=int(model_stats.get("execution_count", 0)),
        request_ns=_ns(inference, "success"),
        queue_ns=_ns(inference, "queue"),
        compute_ns=sum(_ns(inference, part) for part in COMPUTE_PARTS),
        batch_compute_ns=batch_compute,
    )


def snapshot(client: Any) -> dict[str, Counters]:
    """Counters of every loaded model, keyed by model name (latest version), from a ``tritonclient.grpc`` client."""
    stats = client.get_inference_statistics(model_name="", as_json=True)
    return {entry["name"]: parse_counters(entry) for entry in stats.get("model_stats", [])}


def delta(before: Counters, after: Counters) -> Counters:
    """What the counters grew by between two snapshots."""
    return Counters(*(a - b for a, b in zip(astuple(after), astuple(before))))


def total(deltas: Iterable[Counters]) -> Counters:
    """The sum of several :func:`delta` results (e.g. interleaved measurement rounds)."""
    return Counters(*(sum(values) for values in zip(*(astuple(d) for d in deltas), strict=True)))


def figures(grown: Counters) -> StageFigures:
    """Mean per-request and per-image figures of what the counters grew by."""
    per_request = 1e-6 / grown.requests if grown.requests else 0.0
    return StageFigures(
        requests=grown.requests,
        failures=grown.failures,
        images=grown.images,
        executions=grown.executions,
        request_ms=grown.request_ns * per_request,
        queue_ms=grown.queue_ns * per_request,
        compute_ms=grown.compute_ns * per_request,
        compute_ms_per_image=grown.batch_compute_ns * 1e-6 / grown.images if grown.images else 0.0,
    )


def difference(before: Counters, after: Counters) -> StageFigures:
    """What happened between two snapshots of the same model."""
    return figures(delta(before, after))


def deltas(before: Mapping[str, Counters], after: Mapping[str, Counters]) -> dict[str, Counters]:
    """:func:`delta` for every model present in both snapshots."""
    return {name: delta(before[name], after[name]) for name in after if name in before}


def differences(before: Mapping[str, Counters], after: Mapping[str, Counters]) -> dict[str, StageFigures]:
    """:func:`difference` for every model present in both snapshots."""
    return {name: figures(grown) for name, grown in deltas(before, after).items()}


def ensemble_breakdown(
    figures: Mapping[str, StageFigures],
    *,
    ensemble: str = "rtmo",
    stages: tuple[str, ...] = ("preprocess", "engine", "postprocess"),
) -> dict[str, float]:
    """Split the ensemble's mean request time into each stage's compute, all stages' queueing and the rest.

    Shares are fractions of the ensemble's mean server-side request time; ``other`` is what no composing model
    accounts for (the ensemble scheduler moving tensors between steps).

    Raises:
        KeyError: naming the model missing from ``figures``.
    """
    for name in (ensemble, *stages):
        if name not in figures:
            raise KeyError(f"no statistics for model {name!r}; have {sorted(figures)}")
    total = figures[ensemble].request_ms
    parts = {f"{stage}_ms": figures[stage].compute_ms for stage in stages}
    parts["queue_ms"] = sum(figures[stage].queue_ms for stage in stages)
    parts["other_ms"] = max(total - sum(parts.values()), 0.0)
    out: dict[str, float] = {"ensemble_request_ms": round(total, 3)}
    for key, value in parts.items():
        out[key] = round(value, 3)
        out[key.replace("_ms", "_share")] = round(value / total, 4) if total else 0.0
    for stage in stages:
        out[f"{stage}_ms_per_image"] = round(figures[stage].compute_ms_per_image, 3)
    return out
