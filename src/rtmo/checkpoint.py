"""Loading MMPose RTMO checkpoints unchanged (local paths, zoo names and URLs: ``rtmo.zoo``), or seeded random weights.

Steps (timm's ``checkpoint_filter_fn`` style): safe load (``weights_only=True`` plus an allow-list of the
NumPy types MMPose stores in ``meta``) → unwrap ``state_dict`` → strip wrapper prefixes → infer size,
keypoints and input size from tensor shapes → ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtmo.config import CSPConfig, RTMOConfig
from rtmo.errors import CheckpointError, CheckpointIntegrityError
from rtmo.keypoints import layout_from_dataset_meta
from rtmo.model import RTMO
from rtmo.zoo import PRETRAINED_BACKBONES, checkpoint_sha256, download, resolve_checkpoint

__all__ = [
    "RANDOM_PREFIX",
    "infer_config",
    "load_checkpoint",
    "load_pretrained_backbone",
    "numpy_safe_globals",
    "read_state_dict",
]

LOGGER = logging.getLogger(__name__)
RANDOM_PREFIX = "random:"  # random:<size>[:<keypoints>], seeded random weights (tests, offline pipelines)

_STEM_CHANNELS_TO_SIZE = {24: "tiny", 32: "small", 48: "medium", 64: "large"}


def numpy_safe_globals() -> list[Any]:
    """Exactly the NumPy objects pickled in MMPose checkpoint ``meta`` (dataset_meta arrays, numpy scalars)."""
    core = np.core.multiarray  # NumPy 1.x module path; NumPy 2 pickles name ``numpy._core.multiarray``
    entries: list[Any] = [
        np.ndarray,
        np.dtype,
        (core._reconstruct, "numpy.core.multiarray._reconstruct"),
        (core.scalar, "numpy.core.multiarray.scalar"),
        (core._reconstruct, "numpy._core.multiarray._reconstruct"),
        (core.scalar, "numpy._core.multiarray.scalar"),
    ]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "UInt8DType", "BoolDType", "ObjectDType"):
        dtype_class = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_class is not None:
            entries.append(dtype_class)
    return entries


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Safely unpickle a checkpoint; return (state_dict with wrapper prefixes stripped, meta).

    Raises:
        CheckpointIntegrityError: the file is truncated or corrupt.
        CheckpointError: the file holds something other than an MMPose checkpoint.
    """
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to unpickle: it holds objects outside tensors and MMPose's meta allow-list ({exc})"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointIntegrityError(f"{path}: truncated or corrupt checkpoint file ({exc})") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    state = obj.get("state_dict", obj)
    meta = obj.get("meta", {}) if isinstance(obj.get("meta", {}), Mapping) else {}
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no tensor state_dict found (keys: {sorted(obj)[:10]})")
    return {_strip_prefix(k): v for k, v in state.items()}, dict(meta)


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def infer_config(state: Mapping[str, torch.Tensor]) -> RTMOConfig:
    """Size, keypoint count, class count and input size of the model that produced ``state``.

    Raises:
        CheckpointError: the tensors are not those of an RTMO model.
    """
    try:
        stem = state["backbone.stem.conv.conv.weight"]
        vis = state["head.head_module.out_kpt_vis.0.weight"]
        cls = state["head.head_module.out_cls.0.weight"]
    except KeyError as exc:
        raise CheckpointError(f"not an RTMO checkpoint: missing {exc.args[0]!r} (found {len(state)} tensors)") from exc
    size = _STEM_CHANNELS_TO_SIZE.get(int(stem.shape[0]))
    if size is None:
        raise CheckpointError(
            f"not an RTMO checkpoint: stem has {stem.shape[0]} channels, expected one of "
            f"{sorted(_STEM_CHANNELS_TO_SIZE)}"
        )
    return RTMOConfig(
        backbone_config=CSPConfig(size=size), num_classes=int(cls.shape[0]), num_keypoints=int(vis.shape[0])
    )


def load_checkpoint(source: str | os.PathLike[str], *, input_size: int | None = None, seed: int = 0) -> RTMO:
    """Build an ``RTMO`` from an MMPose RTMO checkpoint, or with seeded random weights.

    Args:
        source: a local ``.pth`` path, a zoo name such as ``"rtmo-s_body7"`` (see ``rtmo.zoo.ZOO``), a URL, or
            ``random:<size>[:<keypoints>]`` (e.g. ``random:small``, ``random:tiny:14``).
        input_size: override the size's default input (416 tiny, 640 otherwise).
        seed: torch seed of random weights.

    Returns:
        The model in eval mode; ``model.checkpoint_sha256`` (``"random"`` for random weights) and
        ``model.checkpoint_name`` say where it came from.

    Raises:
        CheckpointError: not an RTMO checkpoint, or keys do not match (missing/unexpected keys listed).
        CheckpointIntegrityError: truncated file or hash mismatch.
        CheckpointUnavailableError: a zoo name or URL could not be downloaded.
    """
    text = os.fspath(source)
    if text.startswith(RANDOM_PREFIX):
        return _random_model(text, input_size=input_size, seed=seed)
    path = resolve_checkpoint(source)
    state, meta = read_state_dict(path)
    config = infer_config(state)
    if input_size is not None:
        config = RTMOConfig(
            backbone_config=config.backbone_config,
            num_classes=config.num_classes,
            num_keypoints=config.num_keypoints,
            input_size=input_size,
        )
    model = RTMO(config)
    _load_strict(model, state, origin=str(path))
    model.checkpoint_sha256 = checkpoint_sha256(path)  # type: ignore[assignment]
    model.checkpoint_name = os.fspath(source)  # type: ignore[assignment]
    # keypoint names and skeleton of the checkpoint's own dataset (custom keypoint sets from `rtmo train`)
    model.keypoint_layout = layout_from_dataset_meta(meta.get("dataset_meta"), config.num_keypoints)  # type: ignore[assignment]
    return model.eval()


def _random_model(source: str, *, input_size: int | None, seed: int) -> RTMO:
    parts = source.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].isdigit()):
        raise CheckpointError(
            f"checkpoint {source!r}: accepted random:<size> or random:<size>:<keypoints>, "
            "e.g. random:small or random:tiny:14"
        )
    keypoints = int(parts[2]) if len(parts) == 3 else 17
    torch.manual_seed(seed)
    model = RTMO(RTMOConfig(backbone_config=CSPConfig(size=parts[1]), num_keypoints=keypoints, input_size=input_size))
    model.checkpoint_sha256 = "random"  # type: ignore[assignment]
    model.checkpoint_name = source  # type: ignore[assignment]
    return model.eval()


def _load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, origin: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{origin}: does not match the RTMO architecture.\n"
            f"  missing keys ({len(missing)}): {missing}\n"
            f"  unexpected keys ({len(unexpected)}): {unexpected}\n"
            f"  shape mismatches ({len(mismatched)}): {mismatched}"
        )
    module.load_state_dict(state, strict=True)


def load_pretrained_backbone(model: RTMO) -> None:
    """Load the YOLOX backbone weights MMPose's RTMO configs start from (prefix ``backbone.``)."""
    entry = PRETRAINED_BACKBONES[model.config.backbone_config.size]
    state, _ = read_state_dict(download(entry))
    backbone_state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    _load_strict(model.backbone, backbone_state, origin=entry.url)
