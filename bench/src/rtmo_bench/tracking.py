"""Tracking benchmark: ``python -m rtmo_bench.tracking [--url HOST:PORT | --checkpoint C] [--duration-s S]``.

1. **Accuracy** of ``rtmo.runtime.tracking.Tracker`` on simulated ground truth: people walking across a 1280x720
   frame at their own speeds (leaving, and new ones entering), detected with box jitter, hidden for a few frames
   now and then, some frames at a low score (ByteTrack's second stage), plus false positives; MOTA, IDF1 and
   identity switches from ``motmetrics``.
2. **Tracker cost**: milliseconds per frame of ``Tracker.update`` at 0, 20 and 100 people (in-process).
3. **Served video**: MOTA, IDF1 and identity switches of ``rtmo_track`` (``client.track``) on
   ``rtmo_bench.trackable``'s panned and scaled video of the crowd photo, served here (on CPU, whatever ``--url``
   says) with that module's random-weight model, whose people are well-defined; the ground truth is frame 0's
   people moved by the pan.
4. **Serving overhead**: frames/s of ``rtmo_track`` ÷ ``rtmo_frames`` on the same frames at the same concurrency
   (closed loop: each thread one video, the next frame when the last returned; ``rtmo_frames`` gets one frame per
   request too). Target ≥ 0.95.

Without ``--url`` it serves, on CPU as ``rtmo serve`` does, a random-weight ``--size`` RTMO calibrated to find about
``--people`` people in the photo the frames are cut from (``rtmo_bench.crowd``; no download).
A table is printed, then one JSON object as the last line. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np

import rtmo_client
from rtmo.keypoints import COCO_SIGMAS
from rtmo.runtime.tracking import Detections, Tracker
from rtmo_bench.closed_loop import Caller, LoadResult, run_closed_loop
from rtmo_bench.paths import PHOTOS
from rtmo_bench.synthetic_video import mot_scores, synthetic_video
from rtmo_bench.trackable import calibration_frame, track_video, trackable_model, trackable_video
from rtmo_contract import TrackingParameters

FRAME_SIZE = (1280, 720)
PHOTO = PHOTOS / "000000196141.jpg"  # the served video pans over it
_POSE = np.random.default_rng(123).uniform(0.15, 0.85, (17, 2))  # one box-relative pose for every simulated person


# -- simulated ground truth ----------------------------------------------------------------------------------------


def simulate(*, people: int, frames: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], list[Detections]]:
    """``people`` walkers at a time over ``frames`` frames: per frame the ground-truth ids, boxes, and detections."""
    rng = np.random.default_rng(seed)
    width, height = FRAME_SIZE
    next_id = itertools.count(1)

    def spawn(anywhere: bool) -> dict[str, Any]:
        size = rng.uniform(40, 90)
        aspect = rng.uniform(2.0, 2.8)
        velocity = rng.uniform(2, 9) * rng.choice([-1, 1])
        x = rng.uniform(0, width) if anywhere else (-size if velocity > 0 else width + size)
        return {
            "id": next(next_id),
            "x": x,
            "y": rng.uniform(size * aspect, height),
            "w": size,
            "h": size * aspect,
            "vx": velocity,
            "vy": rng.uniform(-1.5, 1.5),
            "hidden": 0,
        }

    walkers = [spawn(True) for _ in range(people)]
    truth_ids, truth_boxes, detections = [], [], []
    for _ in range(frames):
        ids, boxes, seen, scores = [], [], [], []
        for index, w in enumerate(walkers):
            w["x"] += w["vx"] + rng.normal(0, 0.5)
            w["y"] = float(np.clip(w["y"] + w["vy"], w["h"], height))
            if not -2 * w["w"] < w["x"] < width + 2 * w["w"]:
                walkers[index] = w = spawn(False)  # left the frame: someone new enters
            box = np.array([w["x"] - w["w"] / 2, w["y"] - w["h"], w["x"] + w["w"] / 2, w["y"]])
            if box[2] < 0 or box[0] > width:
                continue
            ids.append(w["id"])
            boxes.append(box)
            if w["hidden"] == 0 and rng.random() < 0.01:
                w["hidden"] = int(rng.integers(3, 10))  # walks behind something
            if w["hidden"] > 0:
                w["hidden"] -= 1
                continue
            seen.append(box + rng.normal(0, 0.02 * w["h"] / 4, 4))
            scores.append(rng.uniform(0.25, 0.5) if rng.random() < 0.1 else rng.uniform(0.6, 0.95))
        for _ in range(rng.poisson(1.0)):  # false positives
            x, y, s = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(30, 90)
            seen.append(np.array([x, y, x + s, y + 2.4 * s]))
            scores.append(rng.uniform(0.15, 0.55))
        truth_ids.append(np.array(ids, np.int64))
        truth_boxes.append(np.array(boxes).reshape(-1, 4))
        detections.append(_detections(np.array(seen).reshape(-1, 4), np.array(scores), rng))
    return truth_ids, truth_boxes, detections


def _detections(boxes: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> Detections:
    size = boxes[:, 2:] - boxes[:, :2]
    keypoints = boxes[:, None, :2] + _POSE[None] * size[:, None] + rng.normal(0, 2, (len(boxes), 17, 2))
    order = np.argsort(-scores, kind="stable")
    return Detections(
        boxes=boxes[order].astype(np.float32),
        scores=scores[order].astype(np.float32),
        keypoints=keypoints[order].astype(np.float32),
        keypoint_scores=np.full((len(boxes), 17), 0.8, np.float32),
    )


def accuracy(*, people: int = 20, frames: int = 300, seed: int = 0) -> dict[str, Any]:
    """MOTA, IDF1 and switches of the tracker (default parameters) on :func:`simulate`'s ground truth."""
    import motmetrics as mm

    truth_ids, truth_boxes, detections = simulate(people=people, frames=frames, seed=seed)
    tracker = Tracker(sigmas=np.asarray(COCO_SIGMAS))
    parameters = TrackingParameters()
    accumulator = mm.MOTAccumulator(auto_id=True)
    for ids, boxes, people_in_frame in zip(truth_ids, truth_boxes, detections):
        assigned = tracker.update(people_in_frame, parameters).track_ids
        kept = assigned >= 0
        distances = mm.distances.iou_matrix(_xywh(boxes), _xywh(people_in_frame.boxes[kept]), max_iou=0.5)
        accumulator.update(ids.tolist(), assigned[kept].tolist(), distances)
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"], name="sim")
    row = summary.loc["sim"]
    return {
        "people": people,
        "frames": frames,
        "mota": round(float(row["mota"]), 4),
        "idf1": round(float(row["idf1"]), 4),
        "id_switches": int(row["num_switches"]),
    }


def _xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def tracker_cost(people: int, *, frames: int = 200) -> dict[str, Any]:
    """Milliseconds per ``Tracker.update`` with about ``people`` people per frame."""
    _, _, detections = simulate(people=people, frames=frames, seed=1)
    if people == 0:
        detections = [_detections(np.zeros((0, 4)), np.zeros(0), np.random.default_rng(0)) for _ in range(frames)]
    tracker = Tracker(sigmas=np.asarray(COCO_SIGMAS))
    parameters = TrackingParameters()
    times_ms = []
    for frame in detections:
        start = time.perf_counter()
        tracker.update(frame, parameters)
        times_ms.append(1000 * (time.perf_counter() - start))
    steady = times_ms[frames // 10 :]  # the first frames have no tracks yet
    return {
        "people": people,
        "detections_per_frame": round(float(np.mean([len(d) for d in detections])), 1),
        "p50_ms": round(float(np.percentile(steady, 50)), 3),
        "p99_ms": round(float(np.percentile(steady, 99)), 3),
    }


# -- a served video with known identities ------------------------------------------------------------------------


def video_accuracy(*, threads: int) -> dict[str, Any]:
    """MOTA, IDF1 and switches of ``rtmo_track`` on :func:`rtmo_bench.trackable.trackable_video` of ``PHOTO``."""
    import tempfile
    from pathlib import Path

    import torch

    from rtmo_bench.serving import started_server

    video = trackable_video(cv2.imread(str(PHOTO)))
    with tempfile.TemporaryDirectory(prefix="rtmo-bench-trackable-") as work:
        checkpoint = Path(work) / "trackable.pth"
        torch.save({"state_dict": trackable_model(calibration_frame(video)).state_dict()}, checkpoint)
        with started_server(str(checkpoint), threads=threads, max_batch_size=8, top_k=256) as (server, _):
            with rtmo_client.Client(server.urls.grpc, timeout_s=120) as client:
                truth, tracked = track_video(client, video)
    scores = mot_scores(truth, video.shifts, tracked)
    return {
        "frames": len(video.frames),
        "frame_side": video.side,
        "people": len(truth),
        "mota": round(scores["mota"], 4),
        "idf1": round(scores["idf1"], 4),
        "id_switches": scores["id_switches"],
    }


# -- serving -----------------------------------------------------------------------------------------------------


def frames_caller(url: str, frames: Sequence[np.ndarray], *, score_threshold: float) -> Any:
    def make(thread: int) -> Caller:
        client = rtmo_client.Client(url, timeout_s=120)

        def call(i: int) -> int:
            client.estimate(frames[(thread + i) % len(frames)], channels="bgr", score_threshold=score_threshold)
            return 1

        return call

    return make


def track_caller(url: str, frames: Sequence[np.ndarray], *, score_threshold: float) -> Any:
    def make(thread: int) -> Caller:
        client = rtmo_client.Client(url, timeout_s=120)
        video = client.track(itertools.cycle(frames), channels="bgr", score_threshold=score_threshold)

        def call(i: int) -> int:
            next(video)
            return 1

        return call

    return make


def throughput(url: str, *, concurrency: Sequence[int], duration_s: float, rounds: int, score_threshold: float) -> list:
    photo = cv2.imread(str(PHOTO))
    frames = synthetic_video(photo, frames=30).frames
    rows = []
    for threads in concurrency:
        runs: dict[str, list[LoadResult]] = {"rtmo_frames": [], "rtmo_track": []}
        for _ in range(rounds):  # taken in turn, so a busy machine's drift hits both alike
            for name, caller in (("rtmo_frames", frames_caller), ("rtmo_track", track_caller)):
                make = caller(url, frames, score_threshold=score_threshold)
                runs[name].append(run_closed_loop(make, concurrency=threads, duration_s=duration_s / rounds))
        plain, tracked = (LoadResult.merged(runs[n]) for n in ("rtmo_frames", "rtmo_track"))
        ratio = tracked.images_per_s / plain.images_per_s if plain.images_per_s else None
        rows.append(
            {
                "concurrency": threads,
                "rtmo_frames": plain.as_dict(),
                "rtmo_track": tracked.as_dict(),
                "track_over_frames": None if ratio is None else round(ratio, 3),
            }
        )
    with rtmo_client.Client(url) as client:
        people = np.mean([len(client.estimate(f, channels="bgr", score_threshold=score_threshold)) for f in frames])
    for row in rows:
        row["people_per_frame"] = round(float(people), 1)
    return rows


@contextlib.contextmanager
def server_url(args: argparse.Namespace) -> Iterator[str]:
    if args.url:
        yield args.url
        return
    import tempfile
    from pathlib import Path

    from rtmo_bench.crowd import crowd_checkpoint
    from rtmo_bench.serving import started_server

    with tempfile.TemporaryDirectory(prefix="rtmo-bench-track-") as work:
        checkpoint, _ = crowd_checkpoint(args.size, PHOTO, args.people, Path(work) / "crowd.pth")
        with started_server(str(checkpoint), threads=args.threads, max_batch_size=8, top_k=256) as (server, _):
            yield server.urls.grpc


def format_table(report: dict[str, Any]) -> str:
    lines = ["tracker accuracy (simulated ground truth, default parameters)"]
    a = report["accuracy"]
    lines.append(
        f"  {a['people']} people x {a['frames']} frames: MOTA {a['mota']:.3f}  IDF1 {a['idf1']:.3f}  "
        f"ID switches {a['id_switches']}"
    )
    if report.get("video"):
        v = report["video"]
        lines.append(f"served video (rtmo_track, {v['frames']} frames of {v['frame_side']} px, {v['people']} people)")
        lines.append(f"  MOTA {v['mota']:.3f}  IDF1 {v['idf1']:.3f}  ID switches {v['id_switches']}")
    lines.append("tracker cost per frame (in-process)")
    lines.append(f"  {'people':>6} {'detections':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for row in report["tracker_cost"]:
        lines.append(f"  {row['people']:>6} {row['detections_per_frame']:>10} {row['p50_ms']:>8} {row['p99_ms']:>8}")
    if report.get("serving"):
        lines.append("serving: frames/s, one frame per request, each thread one video")
        lines.append(
            f"  {'threads':>7} {'people':>6} {'rtmo_frames':>11} {'rtmo_track':>10} {'ratio':>6} "
            f"{'p50 ms frames/track':>20}"
        )
        for row in report["serving"]:
            f, t = row["rtmo_frames"], row["rtmo_track"]
            lines.append(
                f"  {row['concurrency']:>7} {row['people_per_frame']:>6} {f['images_per_s']:>11} "
                f"{t['images_per_s']:>10} {row['track_over_frames']!s:>6} {f['p50_ms']:>9}/{t['p50_ms']}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "accuracy": accuracy(people=20, frames=args.frames),
        "tracker_cost": [tracker_cost(n) for n in (0, 20, 100)],
    }
    if not args.no_server:
        report["video"] = video_accuracy(threads=args.threads)
        with server_url(args) as url:
            report["serving"] = throughput(
                url,
                concurrency=args.concurrency,
                duration_s=args.duration_s,
                rounds=args.rounds,
                score_threshold=args.score_threshold,
            )
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rtmo_bench.tracking", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="measure a running server (gRPC host:port) instead of starting one")
    parser.add_argument(
        "--size", default="tiny", help="random-weight model served without --url (default: %(default)s)"
    )
    parser.add_argument("--people", type=int, default=20, help="people it is calibrated to find (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="engine intra-op threads (0: ONNX Runtime's default)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="threads (videos) at once")
    parser.add_argument("--duration-s", type=float, default=20.0, help="measured seconds per model and concurrency")
    parser.add_argument("--rounds", type=int, default=2, help="rounds the duration is split into, taken in turn")
    parser.add_argument("--score-threshold", type=float, default=0.1, help="of every request (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=300, help="frames of the simulated accuracy run")
    parser.add_argument("--no-server", action="store_true", help="only the in-process accuracy and cost")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    report = run(build_parser().parse_args(argv))
    print(format_table(report))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
