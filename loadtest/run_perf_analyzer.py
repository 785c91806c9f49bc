"""perf_analyzer over gRPC with real photos, sweeping concurrency, for the ``rtmo`` ensemble and the ``engine`` alone.

For every (model, concurrency) point this runs Triton's perf_analyzer once (``--concurrency-range c:c``, ``-f``
CSV with ``--verbose-csv``, ``--collect-metrics`` from the server's metrics endpoint), parses the CSV, and
reads Triton's per-model statistics before and after so each composing model's queue and compute time of that
point is reported too (perf_analyzer's own CSV only splits the top-level model).

The binary and the libraries it needs are made ready by ``loadtest/install_perf_analyzer.sh`` (run here; it
returns at once when all is installed).

Usage:
    python loadtest/run_perf_analyzer.py --url 127.0.0.1:8001 --metrics-url 127.0.0.1:8002/metrics \\
        --models rtmo engine --concurrency 1 2 4 --out-dir perf_results

A table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf_input_data import MODELS, input_data, write_input_data

from rtmo_bench.serving import PHOTOS, engine_metadata, load_photos
from rtmo_bench.triton_stats import differences, snapshot

HERE = Path(__file__).resolve().parent
INSTALL_SCRIPT = HERE / "install_perf_analyzer.sh"


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer could not be installed, or a run failed or wrote no CSV."""


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    library_dir: Path

    def environment(self) -> dict[str, str]:
        paths = [str(self.library_dir), *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep))]
        return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(paths)}


def locate_perf_analyzer(venv: Path | None = None) -> PerfAnalyzer:
    """Run the install script (idempotent) and return the binary and the ``libcudart`` directory it needs.

    Raises:
        PerfAnalyzerError: with the script's output when it fails.
    """
    venv = venv or Path(sys.prefix)
    done = subprocess.run(["bash", str(INSTALL_SCRIPT), str(venv)], capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or len(lines) < 2:
        raise PerfAnalyzerError(f"{INSTALL_SCRIPT} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return PerfAnalyzer(binary=Path(lines[-2]), library_dir=Path(lines[-1]))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # GPU metric columns stay empty on a CPU server


def parse_csv(path: Path) -> list[dict[str, float | None]]:
    """Rows of a perf_analyzer ``-f`` CSV (``--verbose-csv``), every value a number or None; times are µs.

    Raises:
        PerfAnalyzerError: if the file has no data row or no ``Inferences/Second`` column.
    """
    with path.open(newline="") as handle:
        rows = [
            {key.strip(): _number(value.strip()) for key, value in row.items() if key} for row in csv.DictReader(handle)
        ]
    if not rows or "Inferences/Second" not in rows[0]:
        raise PerfAnalyzerError(f"{path} holds no perf_analyzer results:\n{path.read_text()[:2000]}")
    return rows


def summarize(row: dict[str, float | None]) -> dict[str, Any]:
    """The CSV row in milliseconds and images/s (one image per request: ``-b 1``)."""

    def ms(key: str) -> float | None:
        value = row.get(key)
        return round(value / 1000.0, 3) if value is not None else None

    return {
        "concurrency": int(row["Concurrency"] or 0),
        "images_per_s": row["Inferences/Second"],
        "p50_ms": ms("p50 latency"),
        "p90_ms": ms("p90 latency"),
        "p99_ms": ms("p99 latency"),
        "avg_ms": ms("Avg latency"),
        "client_send_ms": ms("Client Send"),
        "network_server_send_recv_ms": ms("Network+Server Send/Recv"),
        "server_queue_ms": ms("Server Queue"),
        "server_compute_input_ms": ms("Server Compute Input"),
        "server_compute_infer_ms": ms("Server Compute Infer"),
        "server_compute_output_ms": ms("Server Compute Output"),
        "client_recv_ms": ms("Client Recv"),
    }


def perf_command(
    pa: PerfAnalyzer,
    *,
    url: str,
    model: str,
    concurrency: int,
    input_data_path: Path,
    csv_path: Path,
    metrics_url: str | None,
    measurement_interval_ms: int,
    stability_percentage: float,
    max_trials: int,
    measurement_request_count: int | None = None,
) -> list[str]:
    command = [
        str(pa.binary),
        "-m",
        model,
        "-u",
        url,
        "-i",
        "grpc",
        "-b",
        "1",
        "--input-data",
        str(input_data_path),
        "--concurrency-range",
        f"{concurrency}:{concurrency}",
        "-s",
        str(stability_percentage),
        "-r",
        str(max_trials),
        "-f",
        str(csv_path),
        "--verbose-csv",
    ]
    if measurement_request_count is None:
        command += ["--measurement-interval", str(measurement_interval_ms)]
    else:  # windows of a fixed number of requests: stable even when a request takes longer than a short time window
        command += [
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            str(measurement_request_count),
        ]
    if metrics_url:
        command += [
            "--collect-metrics",
            "--metrics-url",
            metrics_url,
            "--metrics-interval",
            str(max(measurement_interval_ms // 2, 100)),
        ]
    return command


def run_point(
    pa: PerfAnalyzer,
    *,
    url: str,
    model: str,
    concurrency: int,
    input_data_path: Path,
    out_dir: Path,
    metrics_url: str | None = None,
    measurement_interval_ms: int = 5000,
    stability_percentage: float = 10.0,
    max_trials: int = 10,
    measurement_request_count: int | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """One perf_analyzer run at one concurrency; its CSV summary plus each model's Triton statistics of the run.

    Raises:
        PerfAnalyzerError: if perf_analyzer fails, times out or writes no CSV (its output is in the message).
    """
    import tritonclient.grpc as grpcclient

    csv_path = out_dir / f"{model}_c{concurrency}.csv"
    command = perf_command(
        pa,
        url=url,
        model=model,
        concurrency=concurrency,
        input_data_path=input_data_path,
        csv_path=csv_path,
        metrics_url=metrics_url,
        measurement_interval_ms=measurement_interval_ms,
        stability_percentage=stability_percentage,
        max_trials=max_trials,
        measurement_request_count=measurement_request_count,
    )
    stats_client = grpcclient.InferenceServerClient(url)
    before = snapshot(stats_client)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=pa.environment(), timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise PerfAnalyzerError(f"perf_analyzer ran past {timeout_s} s: {' '.join(command)}") from error
    (out_dir / f"{model}_c{concurrency}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not csv_path.is_file():
        raise PerfAnalyzerError(
            f"perf_analyzer exited {done.returncode}: {' '.join(command)}\n{(done.stdout + done.stderr)[-3000:]}"
        )
    figures = differences(before, snapshot(stats_client))
    server_models = [name for name in figures if figures[name].requests > 0]
    return {
        "model": model,
        **summarize(parse_csv(csv_path)[0]),
        "csv": str(csv_path),
        "server": {name: figures[name].as_dict() for name in sorted(server_models)},
    }


def sweep(
    *,
    url: str,
    models: Sequence[str],
    concurrency: Sequence[int],
    photos: Sequence[bytes],
    out_dir: Path,
    metrics_url: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """:func:`run_point` for every model and concurrency, with input data generated once per model."""
    pa = locate_perf_analyzer()
    out_dir.mkdir(parents=True, exist_ok=True)
    input_size = engine_metadata(url)[0]
    results = []
    for model in models:
        data_path = write_input_data(
            out_dir / f"{model}_input_data.json", input_data(model, photos, input_size=input_size)
        )
        for c in concurrency:
            results.append(
                run_point(
                    pa,
                    url=url,
                    model=model,
                    concurrency=c,
                    input_data_path=data_path,
                    out_dir=out_dir,
                    metrics_url=metrics_url,
                    **options,
                )
            )
    return results


def format_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'model':>7} {'conc':>4} | {'img/s':>7} {'p50 ms':>7} {'p99 ms':>7} | {'queue':>7} {'infer':>7} | per-model "
        "compute ms/image"
    ]
    for r in results:
        stages = ", ".join(
            f"{name} {fig['compute_ms_per_image']:.1f}" for name, fig in r["server"].items() if name != r["model"]
        )
        lines.append(
            f"{r['model']:>7} {r['concurrency']:>4} | {r['images_per_s']:>7.2f} {r['p50_ms']:>7.1f} "
            f"{r['p99_ms']:>7.1f} | "
            f"{r['server_queue_ms']:>7.1f} {r['server_compute_infer_ms']:>7.1f} | {stages or '-'}"
        )
    lines.append("(perf_analyzer CSV; queue and infer are its server-side ms of the top-level model)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="127.0.0.1:8001", help="gRPC host:port")
    parser.add_argument("--metrics-url", default=None, help="Prometheus endpoint, e.g. 127.0.0.1:8002/metrics")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="where CSVs, logs and input data go (default: a temp dir)"
    )
    parser.add_argument("--measurement-interval-ms", type=int, default=5000)
    parser.add_argument("--stability-percentage", type=float, default=10.0)
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument(
        "--measurement-request-count",
        type=int,
        default=None,
        help="count windows of this many requests instead of --measurement-interval time windows",
    )
    args = parser.parse_args(argv)
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="rtmo-perf-"))
    results = sweep(
        url=args.url,
        models=args.models,
        concurrency=args.concurrency,
        photos=load_photos(args.photos),
        out_dir=out_dir,
        metrics_url=args.metrics_url,
        measurement_interval_ms=args.measurement_interval_ms,
        stability_percentage=args.stability_percentage,
        max_trials=args.max_trials,
        measurement_request_count=args.measurement_request_count,
    )
    print(format_table(results))
    print(json.dumps({"tool": "perf_analyzer", "url": args.url, "out_dir": str(out_dir), "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
