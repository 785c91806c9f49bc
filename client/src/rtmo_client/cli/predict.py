"""``rtmo-client predict PHOTO... [--out DIR] [--json]``: people in photos, drawn and/or as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rtmo_client.cli._common import add_connection_options, add_request_options, connect, progress, request_options
from rtmo_client.errors import InvalidInputError
from rtmo_client.sources import image_files


def add_parser(subparsers: Any) -> None:
    """Register ``predict``."""
    parser = subparsers.add_parser("predict", help="estimate poses in photos", description=__doc__)
    parser.add_argument("photos", nargs="+", type=Path, metavar="PHOTO", help="image files or directories of images")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="write each photo with its poses drawn to DIR/<name>.jpg"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per photo (JSON Lines) instead of a summary"
    )
    parser.add_argument(
        "--keypoint-threshold", type=float, default=0.3, help="hide keypoints below this score when drawing"
    )
    add_request_options(parser)
    add_connection_options(parser)
    parser.set_defaults(handler=run)


def expand(paths: list[Path]) -> list[Path]:
    """Files as given, directories replaced by their images (sorted).

    Raises:
        InvalidInputError: a path does not exist.
    """
    photos: list[Path] = []
    for path in paths:
        if path.is_dir():
            photos.extend(image_files(path))
        elif path.is_file():
            photos.append(path)
        else:
            raise InvalidInputError(f"{path}: no such file or directory")
    return photos


def run(args: argparse.Namespace) -> int:
    """Estimate, then draw and print; returns the exit status."""
    photos = expand(args.photos)
    draw_to = args.out
    if draw_to is not None:
        from rtmo_client._optional import require_cv2

        cv2 = require_cv2("--out (drawing)")
        draw_to.mkdir(parents=True, exist_ok=True)
    with connect(args) as client:
        skeleton = client.model_info().skeleton if draw_to is not None else ()
        results = client.stream(photos, **request_options(args))
        shown = progress(results, total=len(photos), unit="photo", enabled=not args.no_progress)
        for photo, result in zip(photos, shown):
            if args.json:
                print(json.dumps({"image": str(photo), **result.to_dict()}))
            else:
                best = f" (best {result.people[0].score:.2f})" if result.people else ""
                print(f"{photo}: {len(result)} people{best}")
            if draw_to is not None:
                from rtmo_client.draw import draw

                image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
                canvas = draw(image, result, skeleton=skeleton, keypoint_threshold=args.keypoint_threshold)
                cv2.imwrite(str(draw_to / f"{photo.stem}.jpg"), canvas)
    if draw_to is not None:
        print(f"drew {len(photos)} photos into {draw_to}", file=sys.stderr)
    return 0
