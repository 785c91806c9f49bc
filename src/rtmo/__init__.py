"""RTMO multi-person pose estimation, MMPose-compatible, built for serving on Triton.

Attributes load lazily so that the Triton Python models, which only need the NumPy runtime in
``rtmo.runtime``, do not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "BuildError",
    "CSPConfig",
    "CheckpointError",
    "CheckpointIntegrityError",
    "CheckpointUnavailableError",
    "ConfigError",
    "Poses",
    "RTMO",
    "RTMOConfig",
    "RTMOError",
    "load_checkpoint",
]

_WHERE = {
    "BuildError": "rtmo.errors",
    "CSPConfig": "rtmo.config",
    "CheckpointError": "rtmo.errors",
    "CheckpointIntegrityError": "rtmo.errors",
    "CheckpointUnavailableError": "rtmo.errors",
    "ConfigError": "rtmo.errors",
    "Poses": "rtmo.runtime.postprocess",
    "RTMO": "rtmo.model",
    "RTMOConfig": "rtmo.config",
    "RTMOError": "rtmo.errors",
    "load_checkpoint": "rtmo.checkpoint",
}

if TYPE_CHECKING:
    from rtmo.checkpoint import load_checkpoint
    from rtmo.config import CSPConfig, RTMOConfig
    from rtmo.errors import (
        BuildError,
        CheckpointError,
        CheckpointIntegrityError,
        CheckpointUnavailableError,
        ConfigError,
        RTMOError,
    )
    from rtmo.model import RTMO
    from rtmo.runtime.postprocess import Poses


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rtmo' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
