"""CPU benchmark of the RTMO model: ``python -m rtmo_bench.model [--sizes t s] [--threads 2] [--iters N]``.

For each size, with seeded random weights (``rtmo.build.export.load_model('random:<size>')``):

1. images/s of ``RTMO.predict`` on one decoded photo, and one predict split into letterbox
   (``rtmo.runtime.preprocess.letterbox``), network (``CandidateNet`` with top_k = all anchors under
   ``torch.inference_mode``, outputs copied to NumPy) and decode (``rtmo.runtime.postprocess.people``) milliseconds;
2. the exported ONNX graph (``export_onnx``, default top-K) under ONNX Runtime's CPU provider at batch 1 and 4
   against PyTorch eager ``CandidateNet`` with the same top-K on the same letterboxed batch and thread count;
3. when MMPose's reference environment exists (``$RTMO_MMPOSE_VENV`` or ``.mmpose-ref-venv``), MMPose's
   ``inference_bottomup`` on the same photo and the same weights (``tests/mmpose_ref/run_reference.py bench``).

Figures are medians over ``--iters`` timed runs after ``--warmup`` untimed ones; images/s = batch / median.
The last line of the output is one JSON object with every figure. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import torch

from rtmo.build.export import export_onnx, load_model
from rtmo.candidates import CandidateNet, to_numpy
from rtmo.runtime.postprocess import Candidates, people
from rtmo.runtime.preprocess import letterbox
from rtmo_bench.paths import MMPOSE_REFERENCE_SCRIPT, MMPOSE_REFERENCE_VENV, PHOTOS
from rtmo_bench.timing import alternate
from rtmo_contract import RequestParameters

DEFAULT_IMAGE = PHOTOS / "103319.jpg"
SIZE_NAMES = {"t": "tiny", "s": "small", "m": "medium", "l": "large"}


def median_ms(fn: Callable[[], object], *, iters: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``iters`` runs after ``warmup`` untimed runs."""
    return 1000.0 * statistics.median(
        seconds for _, seconds in alternate({"fn": fn}, rounds=iters, warmup=warmup)["fn"]
    )


def mmpose_python() -> Path | None:
    """The reference environment's interpreter, or None when it is not built."""
    venv = MMPOSE_REFERENCE_VENV
    python = venv / "bin" / "python"
    return python if python.is_file() else None


def bench_predict(model: Any, image: np.ndarray, *, iters: int, warmup: int) -> dict[str, Any]:
    size = (model.config.input_size, model.config.input_size)
    predict_ms = median_ms(lambda: model.predict([image]), iters=iters, warmup=warmup)
    num_people = len(model.predict([image])[0])

    canvas, box = letterbox(image, size)
    net = CandidateNet(model, top_k=10**9).eval()
    batch = torch.from_numpy(canvas[None])
    with torch.inference_mode():
        outputs = to_numpy(net(batch))
    decoder = model.keypoint_decoder()
    parameters = RequestParameters()

    def network() -> None:
        with torch.inference_mode():
            to_numpy(net(batch))

    def decode() -> None:
        people([(Candidates(*(o[0] for o in outputs)), box, parameters)], decoder.decode_numpy, num_anchors=net.top_k)

    letterbox_ms = median_ms(lambda: letterbox(image, size), iters=iters, warmup=warmup)
    network_ms = median_ms(network, iters=iters, warmup=warmup)
    decode_ms = median_ms(decode, iters=iters, warmup=warmup)
    imread_ms = median_ms(lambda: cv2.imread(str(DEFAULT_IMAGE)), iters=iters, warmup=warmup)
    return {
        "input_size": model.config.input_size,
        "num_anchors": net.top_k,
        "anchors_above_score_thr": int((outputs[0][0] > parameters.score_threshold).sum()),
        "people": num_people,
        "predict_ms": round(predict_ms, 2),
        "predict_images_per_s": round(1000.0 / predict_ms, 3),
        "letterbox_ms": round(letterbox_ms, 2),
        "network_ms": round(network_ms, 2),
        "decode_ms": round(decode_ms, 2),
        "imread_ms": round(imread_ms, 2),
    }


def bench_onnx(
    model: Any, image: np.ndarray, work: Path, *, threads: int, batches: Sequence[int], iters: int, warmup: int
) -> dict[str, Any]:

    start = time.perf_counter()
    result = export_onnx(model, work / "export", provenance={"checkpoint": "bench"})
    export_s = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(result.onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    top_k = int(result.metadata["top_k"])
    net = CandidateNet(model, top_k=top_k).eval()
    size = model.config.input_size
    canvas, _ = letterbox(image, (size, size))
    out: dict[str, Any] = {
        "top_k": top_k,
        "onnx_mb": round(result.onnx_path.stat().st_size / 1e6, 2),
        "export_s": round(export_s, 1),
        "ort_version": ort.__version__,
        "batches": {},
    }
    for b in batches:
        batch = np.ascontiguousarray(np.stack([canvas] * b))
        tensor = torch.from_numpy(batch)

        def run_torch(tensor: torch.Tensor = tensor) -> None:
            with torch.inference_mode():
                net(tensor)

        ort_ms = median_ms(lambda batch=batch: session.run(None, {"images": batch}), iters=iters, warmup=warmup)
        torch_ms = median_ms(run_torch, iters=iters, warmup=warmup)
        ort_ips, torch_ips = 1000.0 * b / ort_ms, 1000.0 * b / torch_ms
        out["batches"][str(b)] = {
            "ort_ms": round(ort_ms, 2),
            "torch_ms": round(torch_ms, 2),
            "ort_images_per_s": round(ort_ips, 3),
            "torch_images_per_s": round(torch_ips, 3),
            "ort_over_torch": round(ort_ips / torch_ips, 3),
        }
    return out


def bench_mmpose(
    python: Path,
    model: Any,
    short_size: str,
    work: Path,
    *,
    image: Path,
    threads: int,
    iters: int,
    warmup: int,
    timeout_s: float,
) -> dict[str, Any]:
    checkpoint = work / f"rtmo-{short_size}-random.pth"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    command = [
        str(python),
        str(MMPOSE_REFERENCE_SCRIPT),
        "bench",
        "--dataset",
        "body7",
        "--size",
        short_size,
        "--checkpoint",
        str(checkpoint),
        "--image",
        str(image),
        "--threads",
        str(threads),
        "--iters",
        str(iters),
        "--warmup",
        str(warmup),
    ]
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtmo_bench.model", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZE_NAMES), default=["t", "s"])
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--iters", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before each figure")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="batch sizes for ONNX Runtime vs torch")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and ONNX Runtime figures")
    parser.add_argument("--no-mmpose", action="store_true", help="skip the MMPose reference figures")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="scale the classifier as tests/test_server_integration.py does, so that some anchors pass "
        "the score threshold and decode has people to work on (plain random weights find none)",
    )
    parser.add_argument("--mmpose-timeout-s", type=float, default=300.0)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)

    torch.set_num_threads(args.threads)
    image = cv2.imread(str(args.image))
    if image is None:
        parser.error(f"--image {args.image}: cannot be read")
    python = None if args.no_mmpose else mmpose_python()
    report: dict[str, Any] = {
        "image": args.image.name,
        "image_shape": list(image.shape),
        "threads": args.threads,
        "iters": args.iters,
        "warmup": args.warmup,
        "torch_version": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "weights": "seeded random (load_model('random:<size>'))"
        + (", classifier calibrated" if args.calibrate else ""),
        "sizes": {},
    }
    with tempfile.TemporaryDirectory(prefix="rtmo-bench-") as tmp:
        work = Path(tmp)
        for short in args.sizes:
            name = SIZE_NAMES[short]
            print(f"[{name}] predict and split ...", file=sys.stderr, flush=True)
            model, _ = load_model(f"random:{name}")
            model.eval()
            if args.calibrate:
                with torch.no_grad():
                    for conv in model.head.head_module.out_cls:
                        conv.weight.mul_(20000.0)
                        conv.bias.sub_(6.0)
            entry: dict[str, Any] = {"predict": bench_predict(model, image, iters=args.iters, warmup=args.warmup)}
            if not args.no_onnx:
                print(f"[{name}] ONNX export and ONNX Runtime vs torch ...", file=sys.stderr, flush=True)
                entry["onnx"] = bench_onnx(
                    model,
                    image,
                    work / short,
                    threads=args.threads,
                    batches=args.batches,
                    iters=args.iters,
                    warmup=args.warmup,
                )
            if python is not None:
                print(f"[{name}] MMPose reference ...", file=sys.stderr, flush=True)
                ref = bench_mmpose(
                    python,
                    model,
                    short,
                    work,
                    image=args.image,
                    threads=args.threads,
                    iters=args.iters,
                    warmup=args.warmup,
                    timeout_s=args.mmpose_timeout_s,
                )
                entry["mmpose"] = ref
                if "images_per_s" in ref:
                    p = entry["predict"]
                    with_decode_ips = 1000.0 / (p["predict_ms"] + p["imread_ms"])
                    entry["ours_over_mmpose"] = round(p["predict_images_per_s"] / ref["images_per_s"], 3)
                    entry["ours_with_imread_over_mmpose"] = round(with_decode_ips / ref["images_per_s"], 3)
            elif not args.no_mmpose:
                entry["mmpose"] = {"error": "reference environment not found (set RTMO_MMPOSE_VENV or make mmpose-ref)"}
            report["sizes"][short] = entry
            del model

    print_table(report)
    print(json.dumps(report, sort_keys=False))
    return 0


def print_table(report: dict[str, Any]) -> None:
    print(
        f"RTMO CPU benchmark: {report['image']} {report['image_shape'][1]}x{report['image_shape'][0]}, "
        f"{report['threads']} threads, median of {report['iters']} after {report['warmup']} warmup, "
        f"{report['weights']}, load average {report['load_average_1min']} on {report['cpu_count']} CPUs"
    )
    print()
    print("RTMO.predict (decoded image in, people out; split = one predict)")
    print(
        f"{'size':<6}{'input':>6}{'img/s':>9}{'predict ms':>12}{'letterbox':>11}{'network':>10}{'decode':>9}"
        f"{'anchors>thr':>13}{'people':>8}"
    )
    for short, entry in report["sizes"].items():
        p = entry["predict"]
        print(
            f"{short:<6}{p['input_size']:>6}{p['predict_images_per_s']:>9.2f}{p['predict_ms']:>12.1f}"
            f"{p['letterbox_ms']:>11.2f}{p['network_ms']:>10.1f}{p['decode_ms']:>9.2f}"
            f"{p['anchors_above_score_thr']:>13}{p['people']:>8}"
        )
    if any("onnx" in entry for entry in report["sizes"].values()):
        print()
        print("CandidateNet, letterboxed batch: ONNX Runtime CPU vs PyTorch eager (same top-K, same threads)")
        print(f"{'size':<6}{'batch':>6}{'ORT img/s':>11}{'torch img/s':>13}{'ORT/torch':>11}{'ONNX MB':>9}{'top-K':>7}")
        for short, entry in report["sizes"].items():
            onnx_entry = entry.get("onnx")
            if not onnx_entry:
                continue
            for b, row in onnx_entry["batches"].items():
                print(
                    f"{short:<6}{b:>6}{row['ort_images_per_s']:>11.2f}{row['torch_images_per_s']:>13.2f}"
                    f"{row['ort_over_torch']:>11.2f}{onnx_entry['onnx_mb']:>9.1f}{onnx_entry['top_k']:>7}"
                )
    if any("mmpose" in entry for entry in report["sizes"].values()):
        print()
        print("vs MMPose inference_bottomup (same weights; MMPose's figure includes reading and decoding the JPEG)")
        print(
            f"{'size':<6}{'ours img/s':>11}{'MMPose img/s':>14}{'ours/MMPose':>13}{'incl. imread':>14}"
            f"{'people ours/MMPose':>20}"
        )
        for short, entry in report["sizes"].items():
            ref = entry.get("mmpose")
            if ref is None:
                continue
            if "error" in ref:
                print(f"{short:<6}  MMPose: {ref['error']}")
                continue
            p = entry["predict"]
            print(
                f"{short:<6}{p['predict_images_per_s']:>11.2f}{ref['images_per_s']:>14.2f}"
                f"{entry['ours_over_mmpose']:>13.2f}{entry['ours_with_imread_over_mmpose']:>14.2f}"
                f"{p['people']:>12}/{ref['num_instances']}"
            )
    print()


if __name__ == "__main__":
    raise SystemExit(main())
