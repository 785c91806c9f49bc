"""Which weights of an MMPose checkpoint to serve (``checkpoint_weights``); no torch, so CLIs can import it.

MMEngine's ``EMAHook`` (on in RTMO's training configs) saves the EMA-averaged weights in ``state_dict`` and the
source model's (trained, not averaged) in ``ema_state_dict``. ``"ema"`` serves ``state_dict``, what MMPose deploys;
``"source"`` serves ``ema_state_dict`` and needs a checkpoint that has one.
"""

from __future__ import annotations

import argparse
from typing import Literal

__all__ = ["CHECKPOINT_WEIGHTS", "DEFAULT_CHECKPOINT_WEIGHTS", "CheckpointWeights", "add_checkpoint_weights_option"]

CHECKPOINT_WEIGHTS = ("ema", "source")
CheckpointWeights = Literal["ema", "source"]
DEFAULT_CHECKPOINT_WEIGHTS: CheckpointWeights = "ema"


def add_checkpoint_weights_option(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint-weights ema|source``, as ``rtmo serve`` and the build commands take it."""
    parser.add_argument(
        "--checkpoint-weights",
        choices=CHECKPOINT_WEIGHTS,
        default=DEFAULT_CHECKPOINT_WEIGHTS,
        help="weights of an MMEngine runner checkpoint to serve: ema (state_dict, what MMPose deploys: the EMA "
        "weights when its EMAHook was on) or source (the hook's ema_state_dict: the un-averaged weights) "
        "(default: %(default)s)",
    )
