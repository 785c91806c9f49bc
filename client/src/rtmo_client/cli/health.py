"""``rtmo-client health``: exit 0 when the server can serve (ready, and a tiny frame went through ``rtmo_frames``),
1 when not; for Kubernetes and Docker probes. ``--cache-s`` reuses a recent success so frequent probes stay cheap."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rtmo_client.cli._common import add_connection_options, connect
from rtmo_client.health import HealthCache, check_health

PROBE_TIMEOUT_S = 5.0  # shorter than a probe's own timeout, so a hung server is reported rather than killed


def add_parser(subparsers: Any) -> None:
    """Register ``health``."""
    parser = subparsers.add_parser("health", help="exit 0 if the server serves, 1 if not", description=__doc__)
    parser.add_argument(
        "--cache-s",
        type=float,
        default=5.0,
        metavar="S",
        help="reuse a successful probe frame this long; readiness is asked every time (0: no cache; "
        "default: %(default)s)",
    )
    parser.add_argument(
        "--cache-file",
        type=Path,
        default=None,
        help="where the last success is kept (default: one file per user and URL in the temporary directory)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing when healthy")
    add_connection_options(parser)
    # A probe wants the truth now: no retries, and a deadline within the probe's.
    parser.set_defaults(handler=run, timeout=PROBE_TIMEOUT_S, retries=0)


def run(args: argparse.Namespace) -> int:
    """Check once; returns the exit status."""
    cache = HealthCache(args.cache_file or HealthCache.default_path(args.url), max_age_s=args.cache_s)
    with connect(args) as client:
        report = check_health(client, cache=cache)
    if not report.healthy:
        print(f"rtmo-client: unhealthy: {report.reason}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"healthy: {args.url} (probe frame {report.inference})")
    return 0
