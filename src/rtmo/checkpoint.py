"""Loading MMPose RTMO checkpoints unchanged (local paths, zoo names and URLs: ``rtmo.zoo``), or seeded random weights.

Steps (timm's ``checkpoint_filter_fn`` style): safe load (``rtmo.checkpoint_pickle``: nothing in the file is
constructed unless it is a tensor, a container or an allow-listed NumPy/torch type) → pick the weights
(``checkpoint_weights``: the EMA or the source weights of an MMEngine runner checkpoint) → strip wrapper prefixes →
infer size, keypoints and input size from tensor shapes → ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rtmo.checkpoint_pickle import Placeholder, placeholders, safe_torch_load
from rtmo.checkpoint_weights import CHECKPOINT_WEIGHTS, DEFAULT_CHECKPOINT_WEIGHTS, CheckpointWeights
from rtmo.config import CSPConfig, RTMOConfig
from rtmo.errors import CheckpointError
from rtmo.keypoints import layout_from_dataset_meta
from rtmo.model import RTMO
from rtmo.zoo import PRETRAINED_BACKBONES, checkpoint_sha256, download, resolve_checkpoint

__all__ = [
    "CHECKPOINT_WEIGHTS",
    "RANDOM_PREFIX",
    "CheckpointWeights",
    "infer_config",
    "load_checkpoint",
    "load_pretrained_backbone",
    "read_state_dict",
]

LOGGER = logging.getLogger(__name__)
RANDOM_PREFIX = "random:"  # random:<size>[:<keypoints>], seeded random weights (tests, offline pipelines)

_STEM_CHANNELS_TO_SIZE = {24: "tiny", 32: "small", 48: "medium", 64: "large"}

# MMEngine's EMAHook.before_save_checkpoint swaps the EMA-averaged weights into ``state_dict`` and the source
# model's into this section (keys ``module.<name>`` plus the ``steps`` counter): checkpoint_weights="source".
_EMA_HOOK_SECTION = "ema_state_dict"


def read_state_dict(
    path: Path, *, checkpoint_weights: CheckpointWeights = DEFAULT_CHECKPOINT_WEIGHTS
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Safely unpickle a checkpoint; return (the chosen weights with wrapper prefixes stripped, meta).

    Objects outside the allow-list become inert placeholders wherever they sit (``meta``, ``message_hub``,
    ``optimizer``, ``param_schedulers``, ...) and are logged at debug level; only the weights must be tensors.
    Which weights are served is logged at INFO.

    Args:
        path: the checkpoint file (zip or legacy format).
        checkpoint_weights: ``"ema"`` (default): ``state_dict``, what MMPose deploys (the EMA-averaged weights
            when MMEngine's EMAHook saved the file, as with RTMO's configs); ``"source"``: the un-averaged
            weights the EMAHook keeps in ``ema_state_dict``.

    Raises:
        CheckpointIntegrityError: the file is truncated or corrupt.
        CheckpointError: not a checkpoint of tensors, ``"source"`` without an ``ema_state_dict``, or the chosen
            weights hold something other than tensors (named with where they sit, e.g. ``state_dict.x``).
    """
    if checkpoint_weights not in CHECKPOINT_WEIGHTS:
        raise CheckpointError(f"checkpoint_weights={checkpoint_weights!r}: accepted {', '.join(CHECKPOINT_WEIGHTS)}")
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    section, state = _chosen_weights(obj, path=path, checkpoint_weights=checkpoint_weights)
    for where, placeholder in placeholders({k: v for k, v in obj.items() if k != section}):
        LOGGER.debug("%s: %s: skipped %s", path, where, placeholder.describe())
    not_tensors = [
        f"{where}: {placeholder.describe()}" for where, placeholder in placeholders(state, section or "")
    ] + [f"{_join(section, key)}: a {type(v).__name__}, not a tensor" for key, v in state.items() if _plain(v)]
    if not_tensors:
        raise CheckpointError(
            f"{path}: the {checkpoint_weights} weights hold non-tensor objects: {'; '.join(not_tensors[:5])}"
            + (f" (and {len(not_tensors) - 5} more)" if len(not_tensors) > 5 else "")
        )
    if section == _EMA_HOOK_SECTION:
        state = {k: v for k, v in state.items() if k != "steps"}  # the EMA's update counter, not a weight
    meta = obj.get("meta", {})
    return {_strip_prefix(str(k)): v for k, v in state.items()}, dict(meta) if isinstance(meta, Mapping) else {}


def _chosen_weights(
    obj: Mapping[Any, Any], *, path: Path, checkpoint_weights: CheckpointWeights
) -> tuple[str | None, Mapping[Any, Any]]:
    """(section name or None for a bare state dict, its mapping) for ``checkpoint_weights``; logs the choice."""
    has_ema_hook = isinstance(obj.get(_EMA_HOOK_SECTION), Mapping)
    if checkpoint_weights == "source":
        if not has_ema_hook:
            raise CheckpointError(
                f"{path}: checkpoint_weights='source' needs the ema_state_dict that MMEngine's EMAHook saves, and "
                f"this checkpoint has none (sections: {_sections(obj)}); its state_dict holds the weights MMPose "
                "deploys: checkpoint_weights='ema'"
            )
        LOGGER.info(
            "%s: serving the source weights (ema_state_dict, as MMEngine's EMAHook swapped them; "
            "state_dict holds the EMA weights: checkpoint_weights='ema')",
            path,
        )
        return _EMA_HOOK_SECTION, obj[_EMA_HOOK_SECTION]
    if "state_dict" in obj:
        section, state = "state_dict", obj["state_dict"]
    elif all(isinstance(k, str) for k in obj) and any(isinstance(v, torch.Tensor) for v in obj.values()):
        section, state = None, obj  # a bare state dict
    else:
        raise CheckpointError(f"{path}: no state_dict found (sections: {_sections(obj)})")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: state_dict is a {type(state).__name__}, not a dict of tensors")
    if has_ema_hook:
        LOGGER.info(
            "%s: serving the EMA weights (state_dict, where MMEngine's EMAHook saves them; "
            "the source weights in ema_state_dict: checkpoint_weights='source')",
            path,
        )
    else:
        LOGGER.info(
            "%s: serving %s (no ema_state_dict: the EMA weights when the model was trained with an EMA hook, as "
            "MMPose's zoo files are, else the trained weights)",
            path,
            section or "the bare state dict",
        )
    return section, state


def _plain(value: Any) -> bool:
    """Neither a tensor nor a placeholder (placeholders are reported with their own description)."""
    return not isinstance(value, (torch.Tensor, Placeholder))


def _join(section: str | None, key: Any) -> str:
    return f"{section}.{key}" if section else str(key)


def _sections(obj: Mapping[Any, Any]) -> list[str]:
    return sorted(map(str, obj))[:10]


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


def load_checkpoint(
    source: str | os.PathLike[str],
    *,
    input_size: int | None = None,
    seed: int = 0,
    checkpoint_weights: CheckpointWeights = DEFAULT_CHECKPOINT_WEIGHTS,
) -> RTMO:
    """Build an ``RTMO`` from an MMPose RTMO checkpoint, or with seeded random weights.

    Args:
        source: a local ``.pth`` path, a zoo name such as ``"rtmo-s_body7"`` (see ``rtmo.zoo.ZOO``), a URL, or
            ``random:<size>[:<keypoints>]`` (e.g. ``random:small``, ``random:tiny:14``).
        input_size: override the size's default input (416 tiny, 640 otherwise).
        seed: torch seed of random weights.
        checkpoint_weights: ``"ema"`` (default; ``state_dict``, what MMPose deploys: the EMA-averaged weights
            when MMEngine's EMAHook was on, as in RTMO's configs) or ``"source"`` (the hook's other copy in
            ``ema_state_dict``, the un-averaged weights). Logged at INFO.

    Returns:
        The model in eval mode; ``model.checkpoint_sha256`` (``"random"`` for random weights) and
        ``model.checkpoint_name`` say where it came from.

    Raises:
        CheckpointError: not an RTMO checkpoint, keys do not match (missing/unexpected keys listed), the chosen
            weights are absent, or they hold non-tensor objects (named with where they sit).
        CheckpointIntegrityError: truncated file or hash mismatch.
        CheckpointUnavailableError: a zoo name or URL could not be downloaded.
    """
    text = os.fspath(source)
    if text.startswith(RANDOM_PREFIX):
        return _random_model(text, input_size=input_size, seed=seed)
    path = resolve_checkpoint(source)
    state, meta = read_state_dict(path, checkpoint_weights=checkpoint_weights)
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
