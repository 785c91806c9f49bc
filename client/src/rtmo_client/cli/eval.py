"""``rtmo-client eval``: COCO keypoint AP/AR of what the server returns for an annotated image set."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rtmo_client.cli._common import add_connection_options, connect, progress


def add_parser(subparsers: Any) -> None:
    """Register ``eval``."""
    parser = subparsers.add_parser(
        "eval",
        help="COCO keypoint AP/AR of the served model",
        description=__doc__,
        epilog="An interrupted run started again with the same --results continues where it stopped.",
    )
    parser.add_argument(
        "--annotations", required=True, type=Path, help="COCO keypoint annotations, e.g. person_keypoints_val2017.json"
    )
    parser.add_argument("--images", required=True, type=Path, help="directory holding the annotated images")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("keypoint_results.json"),
        help="COCO keypoint-results JSON to write (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, metavar="N", help="requests in flight at once (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object after the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_connection_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table; returns the exit status (2 for unusable annotations, images or model)."""
    from rtmo_client.evaluation import EvaluationError, evaluate_server, format_table

    if args.concurrency < 1:
        raise SystemExit(f"rtmo-client eval: --concurrency {args.concurrency}: must be >= 1")

    def bar(finished: Iterator[int], total: int, done: int) -> Iterator[int]:
        if done:
            print(f"resuming: {done} of {total} images already in {args.results}.partial.jsonl", file=sys.stderr)
        return progress(finished, total=total - done, unit="image", enabled=not args.no_progress)

    with connect(args) as client:
        try:
            report = evaluate_server(
                client, args.annotations, args.images, args.results, concurrency=args.concurrency, progress=bar
            )
        except EvaluationError as error:
            print(f"rtmo-client eval: {error}", file=sys.stderr)
            return 2
    print(format_table(report.stats))
    print(f"{report.images} images ({report.resumed} resumed), {report.people} people -> {report.results_path}")
    if args.json:
        print(
            json.dumps(
                {
                    "stats": report.stats,
                    "images": report.images,
                    "people": report.people,
                    "results": str(report.results_path),
                }
            )
        )
    return 0
