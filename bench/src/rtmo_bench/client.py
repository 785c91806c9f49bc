"""SDK overhead benchmark: ``python -m rtmo_bench.client [--url HOST:PORT] [--rounds N] [--in-flight K]``.

On one server and the same photos, images/s of:

1. **estimate**: ``rtmo_client.Client.estimate`` (one JPEG per call, sequential) vs raw ``tritonclient.grpc``
   ``infer`` with the same bytes, reading the same outputs (``as_numpy`` and the per-row slices);
2. **estimate (frames)**: the same with decoded BGR frames to ``rtmo_frames``, also through system shared memory
   (``Client(shared_memory=True)``), vs raw ``infer`` with the frame in the request body;
3. **stream**: ``Client.stream`` with ``--in-flight`` requests in flight vs raw ``async_infer`` kept at the same
   number in flight by a semaphore, results in input order.

4. **client-side work**: microseconds per image spent in the client alone (request building and response decoding
   on one captured response, no network), SDK vs raw, which is what remains of the SDK's cost on a fast server.

Each pair runs interleaved, SDK then raw, for ``--rounds`` rounds of every photo ``--repeat`` times, so drift hits
both alike; images/s is the total over all rounds, and the ratio is SDK ÷ raw (target >= 0.95).

Without ``--url`` a CPU server is started as ``rtmo serve`` does (``rtmo_bench.serving.started_server``, cached
export of ``--checkpoint``, default ``random:tiny``) and stopped at the end. A table, then one JSON object as
the last line. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import tritonclient.grpc as grpcclient

import rtmo_client
from rtmo_bench.paths import PHOTOS
from rtmo_bench.serving import started_server
from rtmo_bench.timing import alternate
from rtmo_client.images import to_payload
from rtmo_client.wire import build_inputs, decode_result
from rtmo_contract import PEOPLE

TARGET_RATIO = 0.95
OUTPUTS = tuple(tensor.name for tensor in PEOPLE)  # boxes, box_scores, keypoints, keypoint_scores, num_people, ...


def raw_read(result: Any) -> list[tuple[np.ndarray, ...]]:
    """What a raw tritonclient user reads from a response: every row's people, as the SDK does."""
    arrays = {name: result.as_numpy(name) for name in OUTPUTS}
    rows = []
    for row, n in enumerate(arrays["num_people"][:, 0]):
        rows.append(tuple(arrays[name][row, :n] for name in OUTPUTS[:4]))
    return rows


def raw_bytes_input(grpcclient: Any, data: bytes) -> Any:
    tensor = grpcclient.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=np.object_))
    return tensor


def raw_frame_input(grpcclient: Any, frame: np.ndarray) -> Any:
    tensor = grpcclient.InferInput("frame", [1, *frame.shape], "UINT8")
    tensor.set_data_from_numpy(frame[None])
    return tensor


def raw_stream(raw: Any, grpcclient: Any, photos: Sequence[bytes], in_flight: int) -> list[Any]:
    """``async_infer`` with at most ``in_flight`` requests pending; results in input order."""
    slots = threading.Semaphore(in_flight)
    results: list[Any] = [None] * len(photos)
    done = threading.Event()
    remaining = [len(photos)]
    lock = threading.Lock()

    def callback(index: int) -> Callable[[Any, Any], None]:
        def store(result: Any, error: Any) -> None:
            results[index] = error if error is not None else raw_read(result)
            slots.release()
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        return store

    for index, data in enumerate(photos):
        slots.acquire()
        raw.async_infer("rtmo", [raw_bytes_input(grpcclient, data)], callback(index))
    done.wait()
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def client_side_us(raw: Any, grpcclient: Any, data: bytes, info: Any, *, iters: int = 2000) -> dict[str, float]:
    """Mean microseconds per image of the client's own work on one captured response, SDK vs raw."""
    response = raw.infer("rtmo", [raw_bytes_input(grpcclient, data)])

    def sdk() -> object:
        payloads = [to_payload(data)]
        build_inputs(payloads)
        return decode_result(response, payloads, info)

    def raw_side() -> object:
        raw_bytes_input(grpcclient, data)
        return raw_read(response)

    timings = {}
    for name, fn in (("sdk", sdk), ("raw", raw_side)):
        for _ in range(50):
            fn()
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        timings[name] = 1e6 * (time.perf_counter() - start) / iters
    return timings


def interleaved(pairs: dict[str, Callable[[], int]], rounds: int) -> dict[str, float]:
    """images/s of each callable (it returns the images it handled), run in turn ``rounds`` times after one warm-up."""
    timed = alternate(pairs, rounds=rounds, warmup=1)
    return {
        name: sum(images for images, _ in runs) / sum(seconds for _, seconds in runs) for name, runs in timed.items()
    }


@contextlib.contextmanager
def server_url(args: argparse.Namespace) -> Iterator[str]:
    if args.url:
        yield args.url
        return

    with started_server(args.checkpoint, threads=args.threads, max_batch_size=8, top_k=256) as (server, _):
        yield server.urls.grpc


def run(args: argparse.Namespace) -> dict[str, Any]:

    paths = sorted(PHOTOS.glob("*.jpg"))
    photos = [path.read_bytes() for path in paths] * args.repeat
    frames = [cv2.imread(str(path)) for path in paths] * args.repeat
    with (
        server_url(args) as url,
        grpcclient.InferenceServerClient(url) as raw,
        rtmo_client.Client(url, timeout_s=120) as client,
        rtmo_client.Client(url, timeout_s=120, shared_memory=True) as shm_client,
    ):
        client.wait_until_ready(120)
        people = [len(client.estimate(data)) for data in photos[: len(paths)]]
        speeds = interleaved(
            {
                "estimate/sdk": lambda: sum(1 for data in photos if client.estimate(data) is not None),
                "estimate/raw": lambda: sum(
                    1 for data in photos if raw_read(raw.infer("rtmo", [raw_bytes_input(grpcclient, data)]))
                ),
                "frames/sdk": lambda: sum(1 for frame in frames if client.estimate(frame, channels="bgr") is not None),
                "frames/sdk_shm": lambda: sum(
                    1 for frame in frames if shm_client.estimate(frame, channels="bgr") is not None
                ),
                "frames/raw": lambda: sum(
                    1 for frame in frames if raw_read(raw.infer("rtmo_frames", [raw_frame_input(grpcclient, frame)]))
                ),
                "stream/sdk": lambda: sum(1 for _ in client.stream(photos, max_in_flight=args.in_flight)),
                "stream/raw": lambda: len(raw_stream(raw, grpcclient, photos, args.in_flight)),
            },
            args.rounds,
        )
        server = client.server_info()
        model = client.model_info()
        local_us = client_side_us(raw, grpcclient, photos[0], model)
    rows = [
        ("estimate (JPEG bytes, sequential)", speeds["estimate/sdk"], speeds["estimate/raw"]),
        ("estimate (BGR frames, sequential)", speeds["frames/sdk"], speeds["frames/raw"]),
        ("estimate (BGR frames, shared memory)", speeds["frames/sdk_shm"], speeds["frames/raw"]),
        (f"stream ({args.in_flight} in flight)", speeds["stream/sdk"], speeds["stream/raw"]),
    ]
    return {
        "server": f"{server.name} {server.version}",
        "url": url,
        "checkpoint": model.checkpoint,
        "photos": len(paths),
        "people_per_photo": people,
        "rounds": args.rounds,
        "images_per_round": len(photos),
        "in_flight": args.in_flight,
        "target_ratio": TARGET_RATIO,
        "client_side_us_per_image": {
            "sdk": round(local_us["sdk"], 1),
            "raw": round(local_us["raw"], 1),
            "people": people[0],
        },
        "results": [
            {
                "case": case,
                "sdk_images_per_s": round(sdk, 3),
                "raw_images_per_s": round(raw_speed, 3),
                "ratio": round(sdk / raw_speed, 4),
            }
            for case, sdk, raw_speed in rows
        ],
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"rtmo-client vs raw tritonclient.grpc on {report['server']} ({report['url']}), checkpoint "
        f"{report['checkpoint']}, "
        f"{report['rounds']} rounds x {report['images_per_round']} images",
        f"{'case':<40} {'SDK img/s':>10} {'raw img/s':>10} {'SDK/raw':>8}",
    ]
    for row in report["results"]:
        lines.append(
            f"{row['case']:<40} {row['sdk_images_per_s']:>10.2f} {row['raw_images_per_s']:>10.2f} {row['ratio']:>8.3f}"
        )
    local = report["client_side_us_per_image"]
    lines.append(
        f"client-side work per image ({local['people']} people, no network): SDK {local['sdk']:.1f} us, raw "
        f"{local['raw']:.1f} us"
    )
    lines.append(f"target: SDK/raw >= {report['target_ratio']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rtmo_bench.client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="measure a running server (gRPC host:port) instead of starting one")
    parser.add_argument(
        "--checkpoint", default="random:tiny", help="weights of the server started here (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the server started here")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the photos per round (default: %(default)s)")
    parser.add_argument(
        "--in-flight", type=int, default=4, help="requests in flight for the streaming case (default: %(default)s)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = build_parser().parse_args(argv)
    for name in ("rounds", "repeat", "in_flight", "threads"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    report = run(args)
    print(format_table(report))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
