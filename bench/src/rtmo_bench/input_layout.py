"""Measure the engine's input layout: ``python -m rtmo_bench.input_layout [--sizes t s] [--threads 2]``.

The exported graph takes letterboxed uint8 NHWC images and casts them inside the graph; the usual alternative is
float32 NCHW prepared by the preprocessor. For each size, on the same seeded random weights, this exports both
layouts (``export_onnx(input_layout=...)``, same top-K, opset and simplification) and measures, on one photo:

- the bytes one image occupies between the preprocessor and the engine (what Triton copies through the Python
  backend's shared memory and, on GPU, to the device);
- the preprocessor's work per image: ``letterbox`` alone for uint8 NHWC, ``letterbox`` + transpose + float32
  conversion for float32 NCHW;
- ONNX Runtime CPU milliseconds per batch of 1 and 4 for each graph, same thread count;
- per-image total (preprocessor + ONNX Runtime at batch 4 ÷ 4) and the ratio float ÷ uint8 (> 1: uint8 is faster).

Medians over ``--iters`` runs after ``--warmup``, the two layouts timed in alternation so both see the same load
(other processes on the machine); a table, then one JSON object as the last line. Nothing asserts
on time; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from rtmo.build.export import export_onnx, load_model
from rtmo.runtime.preprocess import letterbox
from rtmo_bench.model import DEFAULT_IMAGE, SIZE_NAMES
from rtmo_bench.timing import alternate

LAYOUTS = ("uint8_nhwc", "float32_nchw")


def prepare(image: np.ndarray, size: int, layout: str) -> np.ndarray:
    """What the preprocessor would hand the engine for one image in ``layout``."""
    canvas, _ = letterbox(image, (size, size))
    if layout == "uint8_nhwc":
        return canvas
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32)


def interleaved_ms(fns: dict[str, Callable[[], object]], *, iters: int, warmup: int) -> dict[str, float]:
    """Median milliseconds of each function, timed in alternation so that both see the same machine load."""
    timed = alternate(fns, rounds=iters, warmup=warmup)
    return {name: 1000.0 * statistics.median(seconds for _, seconds in runs) for name, runs in timed.items()}


def bench_size(
    short: str, image: np.ndarray, work: Path, *, threads: int, batches: Sequence[int], iters: int, warmup: int
) -> dict[str, Any]:

    model, _ = load_model(f"random:{SIZE_NAMES[short]}")
    size = model.config.input_size
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    report: dict[str, Any] = {layout: {"ort_ms": {}} for layout in LAYOUTS}
    sessions, inputs = {}, {}
    for layout in LAYOUTS:
        exported = export_onnx(
            model, work / f"{short}-{layout}", input_layout=layout, provenance={"checkpoint": "bench"}
        )
        sessions[layout] = ort.InferenceSession(
            str(exported.onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs[layout] = prepare(image, size, layout)
        report[layout]["bytes_per_image"] = int(inputs[layout].nbytes)
        report[layout]["onnx_mb"] = round(exported.onnx_path.stat().st_size / 1e6, 2)
    preprocess = interleaved_ms(
        {layout: partial(prepare, image, size, layout) for layout in LAYOUTS}, iters=iters * 5, warmup=warmup
    )
    for layout in LAYOUTS:
        report[layout]["preprocess_ms"] = round(preprocess[layout], 3)
    for b in batches:
        runs = {
            layout: partial(
                sessions[layout].run, None, {"images": np.ascontiguousarray(np.stack([inputs[layout]] * b))}
            )
            for layout in LAYOUTS
        }
        for layout, ms in interleaved_ms(runs, iters=iters, warmup=warmup).items():
            report[layout]["ort_ms"][str(b)] = round(ms, 2)
    largest = str(max(batches))
    for layout in LAYOUTS:
        entry = report[layout]
        entry["per_image_ms"] = round(entry["preprocess_ms"] + entry["ort_ms"][largest] / int(largest), 2)
    uint8, float32 = report["uint8_nhwc"], report["float32_nchw"]
    report["bytes_ratio_float_over_uint8"] = round(float32["bytes_per_image"] / uint8["bytes_per_image"], 2)
    report["preprocess_ratio_float_over_uint8"] = round(float32["preprocess_ms"] / uint8["preprocess_ms"], 2)
    report["ort_ratio_float_over_uint8"] = {
        b: round(float32["ort_ms"][b] / uint8["ort_ms"][b], 3) for b in uint8["ort_ms"]
    }
    report["per_image_ratio_float_over_uint8"] = round(float32["per_image_ms"] / uint8["per_image_ms"], 3)
    return report


def print_table(report: dict[str, Any]) -> None:
    batches = list(next(iter(report["sizes"].values()))["uint8_nhwc"]["ort_ms"])
    header = ["size", "layout", "bytes/image", "preprocess ms", *[f"ORT ms b{b}" for b in batches], "per image ms"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for short, figures in report["sizes"].items():
        for layout in LAYOUTS:
            entry = figures[layout]
            print(
                " | ".join(
                    [
                        short,
                        layout,
                        f"{entry['bytes_per_image']:,}",
                        f"{entry['preprocess_ms']:.3f}",
                        *[f"{entry['ort_ms'][b]:.1f}" for b in batches],
                        f"{entry['per_image_ms']:.1f}",
                    ]
                )
            )
        print(
            " | ".join(
                [
                    short,
                    "float ÷ uint8",
                    f"{figures['bytes_ratio_float_over_uint8']}×",
                    f"{figures['preprocess_ratio_float_over_uint8']}×",
                    *[f"{figures['ort_ratio_float_over_uint8'][b]}×" for b in batches],
                    f"{figures['per_image_ratio_float_over_uint8']}×",
                ]
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtmo_bench.input_layout", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["t", "s"], choices=sorted(SIZE_NAMES))
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    args = parser.parse_args(argv)
    image = cv2.imread(str(args.image))
    if image is None:
        parser.error(f"--image: cannot read {args.image} as an image")
    report: dict[str, Any] = {
        "threads": args.threads,
        "image": args.image.name,
        "image_hw": list(image.shape[:2]),
        "sizes": {},
    }
    with tempfile.TemporaryDirectory(prefix="rtmo-bench-layout-") as work:
        for short in args.sizes:
            report["sizes"][short] = bench_size(
                short,
                image,
                Path(work),
                threads=args.threads,
                batches=args.batches,
                iters=args.iters,
                warmup=args.warmup,
            )
    print_table(report)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
