"""Training throughput: ``rtmo.train``'s iteration and data pipeline against MMPose's own, same weights, batch and
machine.

One iteration = forward in train mode, SimOTA targets and losses, backward, gradient clipping, AdamW step and
EMA update, on the same letterboxed batch of the annotated photos (both sides get the prepared tensors). The data
pipeline is measured apart: samples per second through stage 1 (Mosaic with its partners read from disk, the
perspective affine, HSV, flip, filter, to tensors) on the same photos, ours against the config's
``train_pipeline_stage1`` on MMPose's ``CocoDataset``. Both together: images/s of one process that prepares its
batches and trains on them (no loader workers). Each measurement runs in its own process, so the peak RSS is its
own. Prints a table and, last, one JSON line.

    python -m rtmo_bench.training --size tiny --batch-size 4 --input-size 416 --iters 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtmo_bench.model import mmpose_python
from rtmo_bench.paths import ANNOTATIONS, MMPOSE_REFERENCE_SCRIPT, PHOTOS

SHORT = {"tiny": "t", "small": "s", "medium": "m", "large": "l"}


def prepared_batch(size: int, batch_size: int) -> dict[str, np.ndarray]:
    from rtmo.train.dataset import CocoKeypointDataset

    dataset = CocoKeypointDataset(ANNOTATIONS, PHOTOS)
    out: dict[str, np.ndarray] = {}
    canvases = []
    for i in range(batch_size):
        canvas, targets = dataset.samples[i % len(dataset)].letterboxed(size)
        canvases.append(canvas.transpose(2, 0, 1).astype(np.float32))
        out.update({f"img{i}_{k}": v for k, v in targets.items()})
    out["inputs"] = np.stack(canvases)
    return out


def bench_ours(checkpoint: Path, batch_path: Path, *, iters: int, warmup: int, threads: int) -> dict[str, Any]:
    import rtmo
    from rtmo.head import COCO_SIGMAS
    from rtmo.train.criterion import RTMOCriterion, Stage
    from rtmo.train.ema import ExpMomentumEMA
    from rtmo.train.optim import build_optimizer, clip_gradients
    from rtmo.train.targets import ImageTargets

    torch.set_num_threads(threads)
    batch = dict(np.load(batch_path))
    images = torch.from_numpy(batch["inputs"])
    keys = ("bboxes", "labels", "keypoints", "keypoints_visible", "areas")
    targets = [
        ImageTargets(**{k: torch.from_numpy(batch[f"img{i}_{k}"]) for k in keys}) for i in range(images.shape[0])
    ]
    model = rtmo.load_checkpoint(checkpoint).train()
    optimizer = build_optimizer(model)
    ema = ExpMomentumEMA(model)
    criterion = RTMOCriterion(COCO_SIGMAS)
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        step = criterion(model, images, targets, stage=Stage())
        optimizer.zero_grad(set_to_none=True)
        step.total.backward()
        clip_gradients(model)
        optimizer.step()
        ema.update(model)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return dict(
        images_per_s=images.shape[0] * len(times) / sum(times),
        median_step_s=float(np.median(times)),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        threads=torch.get_num_threads(),
    )


def bench_pipeline_ours(size: str, side: int, *, samples: int, warmup: int) -> dict[str, Any]:
    from rtmo.train.dataset import CocoKeypointDataset
    from rtmo.train.pipeline import make_batch, recipe_for

    dataset = CocoKeypointDataset(ANNOTATIONS, PHOTOS)
    recipe = recipe_for(size, side)
    rng = np.random.default_rng(0)
    for i in range(warmup):
        make_batch(dataset, [i % len(dataset)], rng, recipe, strong=True)
    started = time.perf_counter()
    for i in range(samples):
        make_batch(dataset, [i % len(dataset)], rng, recipe, strong=True)
    return dict(
        images_per_s=samples / (time.perf_counter() - started), samples=samples, steps=recipe.steps(strong=True)
    )


def run_side(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{command[1]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtmo_bench.training", description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=list(SHORT))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--input-size", type=int, default=416)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pipeline-samples", type=int, default=40, help="samples through each data pipeline")
    parser.add_argument("--side", choices=["both", "ours", "ours-pipeline"], default="both", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side == "ours":  # the child process of one measurement
        print(
            json.dumps(
                bench_ours(args.checkpoint, args.batch, iters=args.iters, warmup=args.warmup, threads=args.threads)
            )
        )
        return 0
    if args.side == "ours-pipeline":
        print(json.dumps(bench_pipeline_ours(args.size, args.input_size, samples=args.pipeline_samples, warmup=4)))
        return 0
    import rtmo

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = work / "random.pth"
        torch.manual_seed(0)
        model = rtmo.load_checkpoint(f"random:{args.size}")
        torch.save({"state_dict": model.state_dict()}, checkpoint)
        batch_path = work / "batch.npz"
        np.savez(batch_path, **prepared_batch(args.input_size, args.batch_size))
        common = ["--iters", str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        ours = run_side(
            [
                sys.executable,
                "-m",
                "rtmo_bench.training",
                "--side",
                "ours",
                "--checkpoint",
                str(checkpoint),
                "--batch",
                str(batch_path),
                *common,
            ],
            env,
        )
        ours_pipeline = run_side(
            [
                sys.executable,
                "-m",
                "rtmo_bench.training",
                "--side",
                "ours-pipeline",
                "--size",
                args.size,
                "--input-size",
                str(args.input_size),
                "--pipeline-samples",
                str(args.pipeline_samples),
            ],
            env,
        )
        python = mmpose_python()
        mmpose = mmpose_pipeline = None
        reference_env = {**env, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONPATH": ""}
        if python is not None:
            mmpose_pipeline = run_side(
                [
                    str(python),
                    str(MMPOSE_REFERENCE_SCRIPT),
                    "bench-pipeline",
                    "--dataset",
                    "body7",
                    "--size",
                    SHORT[args.size],
                    "--annotations",
                    str(ANNOTATIONS),
                    "--images",
                    str(PHOTOS),
                    "--input-size",
                    str(args.input_size),
                    "--samples",
                    str(args.pipeline_samples),
                ],
                reference_env,
            )
            mmpose = run_side(
                [
                    str(python),
                    str(MMPOSE_REFERENCE_SCRIPT),
                    "bench-train",
                    "--dataset",
                    "body7",
                    "--size",
                    SHORT[args.size],
                    "--checkpoint",
                    str(checkpoint),
                    "--batch",
                    str(batch_path),
                    *common,
                ],
                reference_env,
            )
    print(
        f"training iteration, RTMO-{args.size}, batch {args.batch_size} x {args.input_size}px, "
        f"{args.threads} thread(s), {args.iters} iterations"
    )
    print(
        f"{'':10} {'images/s':>10} {'step s':>8} {'peak RSS MiB':>13} {'pipeline images/s':>18} {'both images/s':>14}"
    )
    rows = {"ours": (ours, ours_pipeline), "mmpose": (mmpose, mmpose_pipeline)}
    for name, (row, pipeline) in rows.items():
        if row is None:
            print(f"{name:10} {'not measured (no MMPose reference environment)':>40}")
            continue
        print(
            f"{name:10} {row['images_per_s']:10.2f} {row['median_step_s']:8.2f} {row['peak_rss_mib']:13.0f} "
            f"{pipeline['images_per_s']:18.2f} {_together(row, pipeline):14.2f}"
        )
    ratio = pipeline_ratio = together_ratio = None
    if mmpose is not None:
        ratio = ours["images_per_s"] / mmpose["images_per_s"]
        pipeline_ratio = ours_pipeline["images_per_s"] / mmpose_pipeline["images_per_s"]
        together_ratio = _together(ours, ours_pipeline) / _together(mmpose, mmpose_pipeline)
        print(
            f"ours / mmpose: iteration {ratio:.2f}x, pipeline {pipeline_ratio:.2f}x, both {together_ratio:.2f}x "
            "(target >= 1.0x)"
        )
    print(
        json.dumps(
            dict(
                benchmark="training",
                size=args.size,
                batch_size=args.batch_size,
                input_size=args.input_size,
                ours=ours,
                mmpose=mmpose,
                ours_pipeline=ours_pipeline,
                mmpose_pipeline=mmpose_pipeline,
                speedup=ratio,
                pipeline_speedup=pipeline_ratio,
                together_speedup=together_ratio,
            )
        )
    )
    return 0


def _together(iteration: dict[str, Any], pipeline: dict[str, Any]) -> float:
    """Images/s of one process that prepares each image and then trains on it."""
    return 1.0 / (1.0 / iteration["images_per_s"] + 1.0 / pipeline["images_per_s"])


if __name__ == "__main__":
    raise SystemExit(main())
