"""Exceptions raised by the server-side ``rtmo`` package.

Tree::

    RTMOError
    ├── ConfigError          (ValueError)  a config field has an unsupported value
    ├── InvalidInputError    (rtmo_contract.InvalidRequestError)  a served request carries an unusable input
    ├── CheckpointError                    a file or download is not a usable RTMO checkpoint
    │   ├── CheckpointIntegrityError       hash mismatch or truncated file
    │   └── CheckpointUnavailableError     cannot be downloaded (offline, HTTP error)
    └── BuildError                         an export/engine/assembly stage cannot proceed
"""

from __future__ import annotations

from rtmo_contract import InvalidRequestError

__all__ = [
    "BuildError",
    "CheckpointError",
    "CheckpointIntegrityError",
    "CheckpointUnavailableError",
    "ConfigError",
    "InvalidInputError",
    "RTMOError",
]


class RTMOError(Exception):
    """Base class of every error raised on purpose by ``rtmo``."""


class ConfigError(RTMOError, ValueError):
    """A configuration field holds a value that is not supported."""


class InvalidInputError(RTMOError, InvalidRequestError):
    """A request's input or parameter is unusable; the message names it, what was wrong and what is accepted."""


class CheckpointError(RTMOError):
    """A file is not a loadable RTMO checkpoint."""


class CheckpointIntegrityError(CheckpointError):
    """A checkpoint file is truncated or its hash does not match the pinned one."""


class CheckpointUnavailableError(CheckpointError):
    """A checkpoint could not be downloaded."""


class BuildError(RTMOError):
    """A build stage (export, engine, assembly) cannot proceed."""
