"""The ``rtmo-client`` command: one module per subcommand, each with ``add_parser(subparsers)``.

To add a subcommand, write a module with ``add_parser`` that sets ``handler`` (a function taking the parsed
arguments and returning the exit status) and list it in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rtmo_client import __version__
from rtmo_client.errors import RTMOClientError

SUBCOMMANDS = (
    "rtmo_client.cli.predict",
    "rtmo_client.cli.video",
    "rtmo_client.cli.info",
    "rtmo_client.cli.eval",
    "rtmo_client.cli.health",
)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand of :data:`SUBCOMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog="rtmo-client", description="Pose estimation with an RTMO Triton server (gRPC)."
    )
    parser.add_argument("--version", action="version", version=f"rtmo-client {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rtmo-client``; returns the exit status (0 ok, 1 a failed request or missing extra, 2 bad usage)."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except RTMOClientError as error:
        kind = type(error).__name__
        print(f"rtmo-client: {kind}: {error.message}", file=sys.stderr)
        return 1
    except ImportError as error:
        print(f"rtmo-client: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status
