"""Serving benchmark: ``python -m rtmo_bench.serving [--checkpoint C | --url HOST:PORT] [--soak MINUTES]``.

In one run, on the same ONNX file and the same ONNX Runtime intra-op thread count, at each ``--concurrency``
(closed loop: that many threads, each sending its next request when the last returned, one image per request):

1. **raw ONNX Runtime**: ``InferenceSession.run`` on letterboxed photos, in-process, no server;
2. **engine through Triton**: the ``engine`` model alone over gRPC, fed the same letterboxed uint8 tensors;
3. **ensemble**: ``rtmo`` over gRPC with the photos' JPEG bytes (decode, letterbox, network, decode of poses).

For each it prints images/s and client-side p50/p99 latency, the ratio ensemble ÷ raw ONNX Runtime (target
≥ 0.85) and, from Triton's own statistics (``get_inference_statistics`` before and after each run), the share
of the ensemble's server time spent in preprocess, engine, postprocess and queues, and each stage's compute
milliseconds per image. A second table scales the ensemble with image size (VGA, 1080p, 4K JPEGs made from one
photo), where decoding grows with the pixels. Each point's ``--duration-s`` is split into ``--rounds`` rounds taken
in turn with the other runs of its table (raw, engine, ensemble, raw, ...), so a busy machine's drift hits all alike.

``--soak MINUTES`` instead drives the ensemble at saturation for that long and samples the server's resident
memory (its process group, from ``/proc``) every ``--soak-interval-s`` seconds, reporting the growth.

Without ``--url`` the benchmark starts its own CPU server the way ``rtmo serve`` does (cached export of
``--checkpoint``, assembly into a temporary copy of the model repository with ``--threads`` engine threads) and
stops it at the end. With ``--url`` it measures a running server; the ONNX file for the raw run is then found
in the ``rtmo serve`` export cache from the engine's metadata, or given with ``--onnx``.

A table is printed, then one JSON object as the last line. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

from rtmo.build.assemble import assemble_repository, copy_templates
from rtmo.runtime.preprocess import letterbox
from rtmo.serving.cpu import DEFAULT_CHECKPOINT, artifact_dir, cpu_server, prepare_artifacts
from rtmo.serving.tritonserver import free_ports
from rtmo_bench.closed_loop import Caller, LoadResult, run_closed_loop
from rtmo_bench.crowd import crowd_checkpoint
from rtmo_bench.memory import RssSampler
from rtmo_bench.paths import MODEL_REPOSITORY, PHOTOS
from rtmo_bench.triton_stats import Counters, StageFigures, deltas, ensemble_breakdown, figures, snapshot, total
from rtmo_contract import KEYPOINTS

LOGGER = logging.getLogger(__name__)
SIZE_PHOTO = PHOTOS / "103319.jpg"
IMAGE_SIZES = {"vga": (640, 480), "1080p": (1920, 1080), "4k": (3840, 2160)}
TARGET_RATIO = 0.85
STAGES = ("preprocess", "engine", "postprocess")


@dataclass(frozen=True)
class Target:
    """The server under test and what the raw ONNX Runtime run must match."""

    grpc_url: str
    onnx_path: Path
    threads: int
    input_size: int
    parameters: dict[str, str]
    server_pid: int | None
    started_here: bool


# -- images -----------------------------------------------------------------------------------------------------


def load_photos(directory: Path) -> list[bytes]:
    """JPEG bytes of every ``*.jpg`` in ``directory``.

    Raises:
        FileNotFoundError: naming the directory when it holds no JPEG.
    """
    paths = sorted(directory.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no *.jpg photos in {directory}; pass --photos DIR with JPEG files")
    return [path.read_bytes() for path in paths]


def letterboxed(photos: Sequence[bytes], input_size: int) -> list[np.ndarray]:
    """Each photo decoded and letterboxed like the preprocess model does: uint8 [1, S, S, 3] BGR."""
    out = []
    for data in photos:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        out.append(np.ascontiguousarray(letterbox(image, (input_size, input_size))[0][None]))
    return out


def scaled_jpeg(photo: Path, width: int, height: int, *, quality: int = 90) -> bytes:
    """``photo`` resized to ``width`` × ``height`` and encoded as JPEG."""
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read {photo} as an image")
    ok, encoded = cv2.imencode(
        ".jpg", cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {width}x{height} JPEG")
    return encoded.tobytes()


# -- callers (one per load thread) --------------------------------------------------------------------------------


def ort_caller(session: Any, batches: Sequence[np.ndarray]) -> Callable[[int], Caller]:
    """Threads share one ONNX Runtime session (``run`` is thread-safe and releases the GIL)."""

    def make(thread: int) -> Caller:
        def call(i: int) -> int:
            session.run(None, {"images": batches[(thread + i) % len(batches)]})
            return 1

        return call

    return make


def engine_caller(url: str, batches: Sequence[np.ndarray]) -> Callable[[int], Caller]:
    """The ``engine`` model alone, one letterboxed image per request, every output returned."""

    def make(thread: int) -> Caller:
        client = grpcclient.InferenceServerClient(url)
        inputs = []
        for batch in batches:
            tensor = grpcclient.InferInput("images", list(batch.shape), "UINT8")
            tensor.set_data_from_numpy(batch)
            inputs.append(tensor)

        def call(i: int) -> int:
            client.infer("engine", [inputs[(thread + i) % len(inputs)]])
            return 1

        return call

    return make


def ensemble_caller(url: str, photos: Sequence[bytes], model: str = "rtmo") -> Callable[[int], Caller]:
    """The ``rtmo`` ensemble, one encoded image per request."""

    def make(thread: int) -> Caller:
        client = grpcclient.InferenceServerClient(url)
        inputs = []
        for data in photos:
            tensor = grpcclient.InferInput("image", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[data]], dtype=np.object_))
            inputs.append(tensor)

        def call(i: int) -> int:
            client.infer(model, [inputs[(thread + i) % len(inputs)]])
            return 1

        return call

    return make


# -- measuring ------------------------------------------------------------------------------------------------------


def people_per_image(url: str, photos: Sequence[bytes]) -> float:
    """Mean people the ensemble finds per photo: the postprocessor's cost grows with it (random weights may find
    none).
    """

    client = grpcclient.InferenceServerClient(url)
    counts: list[int] = []
    for start in range(0, len(photos), 4):  # rows per request stay within any max_batch_size >= 4
        chunk = np.array([[data] for data in photos[start : start + 4]], dtype=np.object_)
        tensor = grpcclient.InferInput("image", list(chunk.shape), "BYTES")
        tensor.set_data_from_numpy(chunk)
        counts += (
            client.infer("rtmo", [tensor], outputs=[grpcclient.InferRequestedOutput("num_people")])
            .as_numpy("num_people")[:, 0]
            .tolist()
        )
    return round(float(np.mean(counts)), 2)


def interleaved(
    runs: dict[str, Callable[[int], Caller]], *, concurrency: int, duration_s: float, rounds: int, stats_client: Any
) -> dict[str, tuple[LoadResult, dict[str, StageFigures]]]:
    """Closed-loop runs of each entry of ``runs``, taken in turn ``rounds`` times for ``duration_s / rounds`` each.

    Interleaving spreads any drift of a shared machine over all entries instead of biasing the last one. Each
    entry gets its merged load result and the Triton statistics of its own rounds, per model.
    """
    loads: dict[str, list[LoadResult]] = {name: [] for name in runs}
    grown: dict[str, list[dict[str, Counters]]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, make_caller in runs.items():
            before = snapshot(stats_client)
            loads[name].append(run_closed_loop(make_caller, concurrency=concurrency, duration_s=duration_s / rounds))
            grown[name].append(deltas(before, snapshot(stats_client)))
    return {
        name: (
            LoadResult.merged(loads[name]),
            {model: figures(total(d[model] for d in grown[name])) for model in grown[name][0]},
        )
        for name in runs
    }


def ort_session(onnx_path: Path, threads: int) -> Any:
    """A CPU session configured like the engine model's (``intra_op_threads``; inter-op 1)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])


def bench_concurrency(
    target: Target, photos: Sequence[bytes], *, concurrency: Sequence[int], duration_s: float, rounds: int
) -> dict[str, Any]:

    stats = grpcclient.InferenceServerClient(target.grpc_url)
    batches = letterboxed(photos, target.input_size)
    session = ort_session(target.onnx_path, target.threads)
    rows: dict[str, Any] = {}
    for c in concurrency:
        LOGGER.info(
            "concurrency %d: raw ONNX Runtime, engine, ensemble (%.0f s each, in %d rounds)", c, duration_s, rounds
        )
        runs = {
            "raw_ort": ort_caller(session, batches),
            "engine": engine_caller(target.grpc_url, batches),
            "ensemble": ensemble_caller(target.grpc_url, photos),
        }
        measured = interleaved(runs, concurrency=c, duration_s=duration_s, rounds=rounds, stats_client=stats)
        (raw, _), (engine, engine_stats), (ensemble, ensemble_stats) = (measured[name] for name in runs)
        rows[str(c)] = {
            "raw_ort": raw.as_dict(),
            "engine": {**engine.as_dict(), "server": engine_stats["engine"].as_dict()},
            "ensemble": {
                **ensemble.as_dict(),
                "breakdown": ensemble_breakdown(ensemble_stats, stages=STAGES),
                "server": {name: ensemble_stats[name].as_dict() for name in ("rtmo", *STAGES)},
            },
            "engine_over_raw_ort": _ratio(engine.images_per_s, raw.images_per_s),
            "ensemble_over_raw_ort": _ratio(ensemble.images_per_s, raw.images_per_s),
        }
        decoder = ensemble_stats.get(KEYPOINTS)
        if decoder is not None and decoder.images:  # batch rows of the keypoints model are people
            rows[str(c)]["ensemble"]["decode_ms_per_person"] = round(decoder.compute_ms_per_image, 4)
            rows[str(c)]["ensemble"]["server"][KEYPOINTS] = decoder.as_dict()
    return rows


def bench_people(args: argparse.Namespace, *, threads: int) -> dict[str, Any]:
    """The concurrency table on one photo for checkpoints that find about each of ``args.people`` people in it."""
    photo = args.people_photo.read_bytes()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rtmo-bench-crowd-") as work:
        for wanted in args.people:
            checkpoint, found = crowd_checkpoint(
                args.people_size, args.people_photo, wanted, Path(work) / f"crowd-{wanted}.pth"
            )
            LOGGER.info("people axis: %d asked, %d found by RTMO.predict", wanted, found)
            with started_server(
                str(checkpoint), threads=threads, max_batch_size=args.max_batch_size, top_k=args.top_k
            ) as (server, onnx):
                input_size, parameters = engine_metadata(server.urls.grpc)
                target = Target(server.urls.grpc, onnx, threads, input_size, parameters, server.pid, True)
                rows[str(wanted)] = {
                    "people_found": people_per_image(target.grpc_url, [photo]),
                    "concurrency": bench_concurrency(
                        target, [photo], concurrency=args.concurrency, duration_s=args.duration_s, rounds=args.rounds
                    ),
                }
    return rows


def bench_image_sizes(
    target: Target, *, sizes: Sequence[str], concurrency: int, duration_s: float, rounds: int
) -> dict[str, Any]:

    stats = grpcclient.InferenceServerClient(target.grpc_url)
    jpegs = {name: scaled_jpeg(SIZE_PHOTO, *IMAGE_SIZES[name]) for name in sizes}
    LOGGER.info(
        "image sizes %s at concurrency %d (%.0f s each, in %d rounds)",
        ", ".join(sizes),
        concurrency,
        duration_s,
        rounds,
    )
    measured = interleaved(
        {name: ensemble_caller(target.grpc_url, [data]) for name, data in jpegs.items()},
        concurrency=concurrency,
        duration_s=duration_s,
        rounds=rounds,
        stats_client=stats,
    )
    rows: dict[str, Any] = {}
    for name, (result, per_model) in measured.items():
        width, height = IMAGE_SIZES[name]
        rows[name] = {
            "width": width,
            "height": height,
            "jpeg_kib": round(len(jpegs[name]) / 1024, 1),
            **result.as_dict(),
            "breakdown": ensemble_breakdown(per_model, stages=STAGES),
        }
    return rows


def soak(
    target: Target, photos: Sequence[bytes], *, minutes: float, concurrency: int, interval_s: float, warmup_s: float
) -> dict[str, Any]:
    """Drive the ensemble for ``minutes`` at ``concurrency`` and sample the server's RSS every ``interval_s``.

    The first sample is taken before any load; growth is reported from the first sample after ``warmup_s``.
    """
    if target.server_pid is None:
        raise ValueError("the soak needs the server's process id to sample its memory")
    sampler = RssSampler(target.server_pid)
    sampler.sample()
    LOGGER.info("soak: %.1f min at concurrency %d, RSS every %.0f s", minutes, concurrency, interval_s)
    result = run_closed_loop(
        ensemble_caller(target.grpc_url, photos),
        concurrency=concurrency,
        duration_s=60.0 * minutes,
        on_tick=sampler.sample,
        tick_s=interval_s,
    )
    sampler.sample()
    return {"minutes": minutes, **result.as_dict(), "memory": sampler.report(warmup_s=warmup_s)}


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


# -- the server -----------------------------------------------------------------------------------------------------


def default_threads() -> int:
    return len(os.sched_getaffinity(0))


def engine_metadata(url: str) -> tuple[int, dict[str, str]]:
    """The engine's input size S (from its ``images`` dims [S, S, 3]) and its config ``parameters``."""
    config = grpcclient.InferenceServerClient(url).get_model_config("engine", as_json=True)["config"]
    dims = [int(d) for d in config["input"][0]["dims"]]
    parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
    return dims[0], parameters


def cached_onnx(parameters: dict[str, str]) -> Path | None:
    """Where ``rtmo serve`` exported the served checkpoint, if this machine has it (see
    ``rtmo.serving.cpu.prepare_artifacts``).
    """

    checkpoint, sha = parameters.get("checkpoint", ""), parameters.get("checkpoint_sha256", "")
    if not (checkpoint.startswith("random:") or sha):
        return None
    path = artifact_dir(checkpoint, sha, top_k=int(parameters.get("top_k", "256"))) / "model.onnx"
    return path if path.is_file() else None


@contextlib.contextmanager
def started_server(checkpoint: str, *, threads: int, max_batch_size: int, top_k: int) -> Iterator[tuple[Any, Path]]:
    """Export (cached) and serve ``checkpoint`` on free loopback ports, as ``rtmo serve`` does; yields (server,
    onnx).
    """

    prepared = prepare_artifacts(checkpoint, top_k=top_k, allow_random_fallback=checkpoint == DEFAULT_CHECKPOINT)
    with tempfile.TemporaryDirectory(prefix="rtmo-bench-") as work:
        repository = Path(work) / "model_repository"
        copy_templates(MODEL_REPOSITORY, repository)
        assemble_repository(
            prepared.export_dir,
            target="cpu",
            repository=repository,
            max_batch_size=max_batch_size,
            engine_intra_op_threads=threads,
        )
        grpc_port, http_port, metrics_port = free_ports(3)
        server = cpu_server(
            repository,
            grpc_port=grpc_port,
            http_port=http_port,
            metrics_port=metrics_port,
            log_path=Path(work) / "tritonserver.log",
            startup_timeout_s=300.0,
        )
        with server:
            yield server, prepared.export_dir / "model.onnx"


@contextlib.contextmanager
def target_from_args(args: argparse.Namespace) -> Iterator[Target]:
    if args.url:
        input_size, parameters = engine_metadata(args.url)
        onnx = args.onnx or cached_onnx(parameters)
        if onnx is None:
            raise SystemExit(
                f"cannot find the ONNX file {args.url} serves (checkpoint {parameters.get('checkpoint')!r}) "
                "in the rtmo serve cache; pass --onnx PATH (the model_repository's engine/1/model.onnx)"
            )
        served_threads = int(parameters.get("intra_op_threads", "0"))
        yield Target(
            args.url,
            Path(onnx),
            args.threads if args.threads is not None else served_threads,
            input_size,
            parameters,
            args.server_pid,
            started_here=False,
        )
        return
    threads = args.threads if args.threads is not None else default_threads()
    with started_server(args.checkpoint, threads=threads, max_batch_size=args.max_batch_size, top_k=args.top_k) as (
        server,
        onnx,
    ):
        input_size, parameters = engine_metadata(server.urls.grpc)
        yield Target(server.urls.grpc, onnx, threads, input_size, parameters, server.pid, started_here=True)


# -- report -----------------------------------------------------------------------------------------------------------


def format_tables(report: dict[str, Any]) -> str:
    lines = []
    server = report["server"]
    lines.append(
        f"RTMO serving benchmark — checkpoint {server['checkpoint']} ({server['size']}, input {server['input_size']}), "
        f"ONNX Runtime threads {report['threads']}, {report['duration_s']} s per point in {report['rounds']} "
        "interleaved rounds, "
        f"{report['photos']} photos ({report['people_per_image']} people found per photo)"
    )
    if "concurrency" in report:
        lines.append("")
        lines.append(
            f"{'conc':>4} | {'raw ORT img/s':>13} {'p50':>7} {'p99':>7} | {'engine img/s':>12} {'p50':>7} {'p99':>7} | "
            f"{'rtmo img/s':>10} {'p50':>7} {'p99':>7} | {'rtmo/ORT':>8}"
        )
        for c, row in report["concurrency"].items():
            raw, eng, ens = row["raw_ort"], row["engine"], row["ensemble"]
            ratio = row["ensemble_over_raw_ort"]
            lines.append(
                f"{c:>4} | {raw['images_per_s']:>13.2f} {raw['p50_ms']:>7.1f} {raw['p99_ms']:>7.1f} | "
                f"{eng['images_per_s']:>12.2f} {eng['p50_ms']:>7.1f} {eng['p99_ms']:>7.1f} | "
                f"{ens['images_per_s']:>10.2f} {ens['p50_ms']:>7.1f} {ens['p99_ms']:>7.1f} | "
                f"{ratio if ratio is not None else float('nan'):>8.3f}"
            )
        lines.append(f"(latencies in ms, client side; target rtmo/ORT ≥ {TARGET_RATIO})")
        lines.append("")
        lines.append(
            "ensemble server time per request (Triton statistics): share of the ensemble's time, and compute ms per "
            "image"
        )
        lines.append(
            f"{'conc':>4} | {'server ms':>9} | {'pre':>6} {'engine':>6} {'post':>6} {'queue':>6} {'other':>6} | "
            f"{'pre ms/img':>10} {'eng ms/img':>10} {'post ms/img':>11} | {'eng batch':>9}"
        )
        for c, row in report["concurrency"].items():
            b = row["ensemble"]["breakdown"]
            lines.append(
                f"{c:>4} | {b['ensemble_request_ms']:>9.1f} | {b['preprocess_share']:>6.1%} {b['engine_share']:>6.1%} "
                f"{b['postprocess_share']:>6.1%} {b['queue_share']:>6.1%} {b['other_share']:>6.1%} | "
                f"{b['preprocess_ms_per_image']:>10.2f} {b['engine_ms_per_image']:>10.2f} "
                f"{b['postprocess_ms_per_image']:>11.2f} | {row['ensemble']['server']['engine']['mean_batch']:>9.2f}"
            )
    if "people" in report:
        lines.append("")
        lines.append(f"people axis (one photo, {report['people_photo']}; decode = keypoints model compute per person)")
        lines.append(
            f"{'asked':>5} {'found':>6} {'conc':>4} | {'raw ORT img/s':>13} {'rtmo img/s':>10} {'rtmo/ORT':>8} | "
            f"{'decode ms/person':>16} {'post share':>10}"
        )
        for wanted, entry in report["people"].items():
            for c, row in entry["concurrency"].items():
                ensemble = row["ensemble"]
                decode = ensemble.get("decode_ms_per_person")
                lines.append(
                    f"{wanted:>5} {entry['people_found']:>6} {c:>4} | {row['raw_ort']['images_per_s']:>13.2f} "
                    f"{ensemble['images_per_s']:>10.2f} {row['ensemble_over_raw_ort'] or 0:>8.3f} | "
                    f"{'-' if decode is None else f'{decode:.4f}':>16} "
                    f"{ensemble['breakdown'].get('postprocess_share', 0):>10.1%}"
                )
    if "image_sizes" in report:
        lines.append("")
        lines.append(f"ensemble vs image size (one JPEG per request, concurrency {report['image_size_concurrency']})")
        lines.append(
            f"{'size':>6} {'pixels':>11} {'JPEG KiB':>9} | {'img/s':>7} {'p50':>7} {'p99':>7} | {'pre ms/img':>10} "
            f"{'pre share':>9}"
        )
        for name, row in report["image_sizes"].items():
            b = row["breakdown"]
            lines.append(
                f"{name:>6} {row['width']:>5}x{row['height']:<5} {row['jpeg_kib']:>9.0f} | {row['images_per_s']:>7.2f} "
                f"{row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} | {b['preprocess_ms_per_image']:>10.2f} "
                f"{b['preprocess_share']:>9.1%}"
            )
    if "soak" in report:
        s, m = report["soak"], report["soak"]["memory"]
        lines.append("")
        lines.append(
            f"soak: {s['minutes']} min at concurrency {s['concurrency']}: {s['images_per_s']:.2f} img/s, "
            f"{s['requests']} requests, {s['failures']} failures"
        )
        lines.append(
            f"server RSS (process group, {m['samples']} samples): idle {m['rss_idle_mib']:.1f} MiB, after "
            f"{m['warmup_s']:.0f} s "
            f"{m['rss_start_mib']:.1f}, end {m['rss_end_mib']:.1f}, max {m['rss_max_mib']:.1f}"
        )
        lines.append(
            f"growth after warm-up {m['growth_mib']:+.1f} MiB; slope {m['slope_mib_per_min']:+.3f} MiB/min, "
            f"over the last half {m['slope_last_half_mib_per_min']:+.3f} MiB/min"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    photos = load_photos(args.photos)
    with target_from_args(args) as target:
        report: dict[str, Any] = {
            "benchmark": "rtmo_bench.serving",
            "server": {
                "url": target.grpc_url,
                "started_by_benchmark": target.started_here,
                **{key: target.parameters.get(key) for key in ("checkpoint", "checkpoint_sha256", "size", "top_k")},
                "input_size": target.input_size,
            },
            "onnx": str(target.onnx_path),
            "threads": target.threads,
            "ort_version": ort.__version__,
            "cpus": default_threads(),
            "duration_s": args.duration_s,
            "rounds": args.rounds,
            "photos": len(photos),
            "people_per_image": people_per_image(target.grpc_url, photos),
        }
        if args.soak is not None:
            report["soak"] = soak(
                target,
                photos,
                minutes=args.soak,
                concurrency=max(args.concurrency),
                interval_s=args.soak_interval_s,
                warmup_s=args.soak_warmup_s,
            )
            return report
        report["concurrency"] = bench_concurrency(
            target, photos, concurrency=args.concurrency, duration_s=args.duration_s, rounds=args.rounds
        )
        if args.people:
            report["people_photo"] = args.people_photo.name
            report["people"] = bench_people(args, threads=target.threads)
        if args.sizes:
            report["image_size_concurrency"] = args.size_concurrency or max(args.concurrency)
            report["image_sizes"] = bench_image_sizes(
                target,
                sizes=args.sizes,
                concurrency=report["image_size_concurrency"],
                duration_s=args.duration_s,
                rounds=args.rounds,
            )
    ratios = [
        row["ensemble_over_raw_ort"]
        for row in report["concurrency"].values()
        if row["ensemble_over_raw_ort"] is not None
    ]
    report["target_ratio"] = TARGET_RATIO
    report["min_ensemble_over_raw_ort"] = min(ratios) if ratios else None
    report["meets_target"] = bool(ratios) and min(ratios) >= TARGET_RATIO
    return report


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not positive")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rtmo_bench.serving",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint",
        default="rtmo-s_body7",
        help="weights for the server the benchmark starts: path, zoo name, URL or random:<size> "
        "(default %(default)s, falling back to random:small offline, like rtmo serve)",
    )
    source.add_argument("--url", help="gRPC host:port of a running server to measure instead")
    parser.add_argument("--onnx", type=Path, help="with --url: the ONNX file the server's engine runs")
    parser.add_argument("--server-pid", type=int, help="with --url and --soak: tritonserver's process id")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads of both the engine and the raw run (default: the CPUs "
        "available; with --url: what the served engine uses)",
    )
    parser.add_argument("--concurrency", type=_positive(int), nargs="+", default=[1, 2, 4])
    parser.add_argument("--duration-s", type=_positive(float), default=12.0, help="measured seconds per point")
    parser.add_argument(
        "--rounds",
        type=_positive(int),
        default=3,
        help="split each point into this many rounds, interleaved with the other runs of its table",
    )
    parser.add_argument(
        "--sizes",
        nargs="*",
        choices=sorted(IMAGE_SIZES),
        default=list(IMAGE_SIZES),
        help="image sizes of the scaling table (none: skip it)",
    )
    parser.add_argument(
        "--size-concurrency", type=_positive(int), help="concurrency of the size table (default: the largest)"
    )
    parser.add_argument(
        "--photos", type=Path, default=PHOTOS, help="directory of JPEG photos (default: the test photos)"
    )
    parser.add_argument(
        "--people",
        type=int,
        nargs="*",
        default=[],
        help="people-count axis: the concurrency table again for random-weight checkpoints that find about this "
        "many people in --people-photo (e.g. 0 20 100); each gets its own server",
    )
    parser.add_argument("--people-photo", type=Path, default=PHOTOS / "000000197388.jpg")
    parser.add_argument("--people-size", default="small", help="model size of the people axis (default %(default)s)")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=256)
    parser.add_argument(
        "--soak",
        type=_positive(float),
        metavar="MINUTES",
        help="soak mode: the ensemble at the largest --concurrency for MINUTES, sampling server RSS",
    )
    parser.add_argument("--soak-interval-s", type=_positive(float), default=5.0)
    parser.add_argument(
        "--soak-warmup-s",
        type=float,
        default=60.0,
        help="growth is measured from the first sample after this many seconds of load (default %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url and (args.onnx is not None or args.server_pid is not None):
        parser.error("--onnx and --server-pid only apply with --url (a server the benchmark starts uses its own)")
    if args.url and args.soak is not None and args.server_pid is None:
        parser.error("--soak with --url needs --server-pid (tritonserver's process id) to sample the server's memory")
    report = run(args)
    print(format_tables(report))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
