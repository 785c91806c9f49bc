"""Training checkpoints in MMPose's format, written atomically, and the model a run starts from.

``best.pth`` / ``last.pth`` hold ``meta`` (with ``dataset_meta``: keypoint names, skeleton, sigmas, flip pairs) and
``state_dict`` with the EMA weights, MMPose's keys: MMPose's ``init_model`` and ``rtmo serve --checkpoint`` load
them unchanged. ``last.pth`` also holds ``resume`` (raw weights, optimizer, EMA step count, epoch, best AP).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from rtmo.checkpoint import RANDOM_PREFIX, load_checkpoint
from rtmo.model import RTMO

__all__ = ["adapt_keypoints", "initial_model", "write_checkpoint"]


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` into a temporary file next to ``path``, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def initial_model(source: str, *, num_keypoints: int, seed: int = 0) -> tuple[RTMO, list[str]]:
    """The model named by ``--from`` (zoo name, checkpoint path, ``random:<size>``) with ``num_keypoints``
    keypoints, and the layers re-initialised because their shape depends on the keypoint count."""
    if source.startswith(RANDOM_PREFIX) and source.count(":") == 1:
        source = f"{source}:{num_keypoints}"
    model = load_checkpoint(source, seed=seed)
    return adapt_keypoints(model, num_keypoints, seed=seed)


def adapt_keypoints(model: RTMO, num_keypoints: int, *, seed: int = 0) -> tuple[RTMO, list[str]]:
    """``model`` itself when it already has ``num_keypoints``; otherwise a new model with every weight whose shape
    does not depend on the keypoint count copied, and the names of the tensors left freshly initialised."""
    if model.config.num_keypoints == num_keypoints:
        return model, []
    torch.manual_seed(seed)
    adapted = RTMO(replace(model.config, num_keypoints=num_keypoints))
    source = model.state_dict()
    target = adapted.state_dict()
    kept = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    reinitialised = sorted(k for k in target if k not in kept)
    adapted.load_state_dict({**target, **kept})
    return adapted, reinitialised


_LAYER_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def reinitialised_layers(names: list[str]) -> list[str]:
    """Tensor names grouped into their layers (``head.head_module.out_kpt_vis.0``; a tensor held directly by a
    bigger module, such as ``head.dcc.pos_enc``, by its own name), for the start log."""
    return sorted({name.rsplit(".", 1)[0] if name.rsplit(".", 1)[-1] in _LAYER_TENSORS else name for name in names})
