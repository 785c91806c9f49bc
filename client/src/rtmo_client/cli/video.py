"""``rtmo-client video IN.mp4 --out OUT.mp4``: draw the poses of every frame into a new video."""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rtmo_client.cli._common import add_connection_options, add_request_options, connect, progress, request_options
from rtmo_client.errors import InvalidInputError
from rtmo_client.sources import video_frames, video_properties

Frame = npt.NDArray[np.uint8]


def add_parser(subparsers: Any) -> None:
    """Register ``video``."""
    parser = subparsers.add_parser("video", help="draw poses into a video", description=__doc__)
    parser.add_argument("input", type=Path, metavar="IN", help="video file to read")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT", help="video file to write (mp4v codec)")
    parser.add_argument("--batch-size", type=int, default=1, help="frames per request (default: %(default)s)")
    parser.add_argument("--keypoint-threshold", type=float, default=0.3, help="hide keypoints below this score")
    add_request_options(parser)
    add_connection_options(parser)
    parser.set_defaults(handler=run)


def remembered(frames: Iterable[Frame], memory: deque[Frame]) -> Iterator[Frame]:
    """``frames``, each also appended to ``memory``: results come back in order, so the oldest one is theirs."""
    for frame in frames:
        memory.append(frame)
        yield frame


def run(args: argparse.Namespace) -> int:
    """Stream the frames, draw each result on its frame, write the video; returns the exit status."""
    from rtmo_client._optional import require_cv2
    from rtmo_client.draw import draw

    cv2 = require_cv2("video")
    if not args.input.is_file():
        raise InvalidInputError(f"{args.input}: no such video file")
    fps, count, size = video_properties(args.input)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise InvalidInputError(f"{args.out}: cannot write a video there (mp4v codec, {size[0]}x{size[1]})")
    written = 0
    try:
        with connect(args) as client:
            skeleton = client.model_info().skeleton
            pending: deque[Frame] = deque()
            results = client.stream(
                remembered(video_frames(args.input), pending),
                channels="bgr",
                batch_size=args.batch_size,
                **request_options(args),
            )
            for result in progress(results, total=count or None, unit="frame", enabled=not args.no_progress):
                drawn = draw(pending.popleft(), result, skeleton=skeleton, keypoint_threshold=args.keypoint_threshold)
                writer.write(drawn)
                written += 1
    finally:
        writer.release()
    print(f"wrote {written} frames to {args.out}", file=sys.stderr)
    return 0
