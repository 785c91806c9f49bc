"""Options and helpers the subcommands share: connection, request parameters, progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rtmo_client.client import Client

T = TypeVar("T")


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--timeout``, TLS and header options."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help="server gRPC host:port, or dns:///host:port for every pod of a headless Service; several servers: repeat "
        "--url or separate them with commas, requests take them in turn (default: localhost:8001)",
    )
    group.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="per-call deadline in seconds (default: %(default)s)"
    )
    group.add_argument("--ssl", action="store_true", help="use TLS")
    group.add_argument("--root-certificates", metavar="PEM", help="CA certificate file for TLS (default: system roots)")
    group.add_argument(
        "--header", action="append", default=[], metavar="KEY=VALUE", help="gRPC metadata sent with every call"
    )
    group.add_argument(
        "--retries", type=int, default=3, help="retries when the server is unavailable (default: %(default)s)"
    )


def add_request_options(parser: argparse.ArgumentParser) -> None:
    """Request parameters and streaming options."""
    group = parser.add_argument_group("request")
    group.add_argument("--score-threshold", type=float, help="keep people scoring above this (server default 0.1)")
    group.add_argument("--nms-iou-threshold", type=float, help="box NMS IoU threshold (server default 0.65)")
    group.add_argument("--max-people", type=int, help="at most this many people per image")
    group.add_argument("--pose-nms", action="store_true", default=None, help="also run MMPose's pose NMS")
    group.add_argument(
        "--in-flight", type=int, default=4, metavar="N", help="requests in flight at once (default: %(default)s)"
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def request_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :meth:`Client.stream` from the parsed request options."""
    return {
        "score_threshold": args.score_threshold,
        "nms_iou_threshold": args.nms_iou_threshold,
        "max_people": args.max_people,
        "pose_nms": args.pose_nms,
        "max_in_flight": args.in_flight,
    }


def connect(args: argparse.Namespace) -> Client:
    """A :class:`Client` from the connection options.

    Raises:
        SystemExit: a ``--header`` without ``=``.
    """
    headers = {}
    for item in args.header:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"rtmo-client: --header {item!r}: expected KEY=VALUE")
        headers[key] = value
    return Client(
        urls(args.url),
        timeout_s=args.timeout,
        ssl=args.ssl or args.root_certificates is not None,
        root_certificates=args.root_certificates,
        headers=headers or None,
        retries=args.retries,
    )


def urls(given: list[str] | None) -> list[str]:
    """The endpoints of the ``--url`` options (repeated, or comma separated), default ``localhost:8001``."""
    endpoints = [url.strip() for value in given or ["localhost:8001"] for url in value.split(",") if url.strip()]
    if not endpoints:
        raise SystemExit("rtmo-client: --url: expected host:port")
    return endpoints


def progress(items: Iterable[T], *, total: int | None, unit: str, enabled: bool) -> Iterator[T]:
    """``items`` with a tqdm bar on stderr (tqdm hides it when stderr is not a terminal)."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm import tqdm
    except ImportError as error:
        raise ImportError("progress bars need tqdm: pip install 'rtmo-client[cli]' (or pass --no-progress)") from error
    yield from tqdm(items, total=total, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)
