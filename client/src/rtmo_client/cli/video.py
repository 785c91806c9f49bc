"""``rtmo-client video IN.mp4 --out OUT.mp4``: draw the poses of every frame into a new video.

With ``--track`` the frames go to the ``rtmo_track`` model as one sequence: each person is drawn in the colour of
its track with its id, and ``--json FILE`` writes the tracks as MOTChallenge rows
(``frame,id,left,top,width,height,score,-1,-1,-1``, frames from 1).
"""

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
from rtmo_client.client import Client
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
    parser.add_argument("--track", action="store_true", help="track people: stable colour and id per person")
    parser.add_argument("--json", type=Path, metavar="FILE", help="with --track: write MOT-style rows of the tracks")
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
    if args.json is not None and not args.track:
        raise InvalidInputError("--json: writes tracks; add --track")
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
            frames: deque[Frame] = deque()
            if args.track:
                written = _write_tracks(
                    client, args, remembered(video_frames(args.input), frames), frames, writer, count
                )
            else:
                skeleton = client.model_info().skeleton
                results = client.stream(
                    remembered(video_frames(args.input), frames),
                    channels="bgr",
                    batch_size=args.batch_size,
                    **request_options(args),
                )
                for result in progress(results, total=count or None, unit="frame", enabled=not args.no_progress):
                    writer.write(
                        draw(frames.popleft(), result, skeleton=skeleton, keypoint_threshold=args.keypoint_threshold)
                    )
                    written += 1
    finally:
        writer.release()
    print(f"wrote {written} frames to {args.out}", file=sys.stderr)
    return 0


def _write_tracks(
    client: Client, args: argparse.Namespace, source: Iterator[Frame], frames: deque[Frame], writer: Any, count: int
) -> int:
    """Track the video, draw each frame's tracks, write the MOT rows if asked; returns the frames written."""
    from rtmo_client.draw_tracks import draw_tracks
    from rtmo_contract import TRACK_MODEL

    skeleton = client.model_info(TRACK_MODEL).skeleton
    options = {key: value for key, value in request_options(args).items() if key != "max_in_flight"}
    rows: list[list[float]] = []
    results = client.track(source, channels="bgr", **options)
    written = 0
    for result in progress(results, total=count or None, unit="frame", enabled=not args.no_progress):
        writer.write(
            draw_tracks(frames.popleft(), result, skeleton=skeleton, keypoint_threshold=args.keypoint_threshold)
        )
        rows.extend(result.to_mot_rows())
        written += 1
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text("".join(",".join(_mot_value(v) for v in row) + "\n" for row in rows))
    return written


def _mot_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"
