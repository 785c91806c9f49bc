"""``rtmo-client info``: the server's version and the model's keypoints, skeleton and checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from rtmo_client.cli._common import add_connection_options, connect


def add_parser(subparsers: Any) -> None:
    """Register ``info``."""
    parser = subparsers.add_parser("info", help="show server and model metadata", description=__doc__)
    parser.add_argument("--model", default="rtmo", help="model to describe (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_connection_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the metadata; returns the exit status."""
    with connect(args) as client:
        server = client.server_info()
        model = client.model_info(args.model)
    if args.json:
        print(json.dumps({"server": dataclasses.asdict(server), "model": dataclasses.asdict(model)}, default=dict))
        return 0
    print(f"server      {server.name} {server.version} at {client.url}")
    print(f"model       {model.name} (max batch {model.max_batch_size}, input {model.input_size})")
    print(f"checkpoint  {model.checkpoint} (sha256 {model.checkpoint_sha256})")
    print(f"keypoints   {len(model.keypoint_names)}: {', '.join(model.keypoint_names)}")
    print(f"skeleton    {len(model.skeleton)} links: {' '.join(f'{a}-{b}' for a, b in model.skeleton)}")
    return 0
