"""Loading MMPose RTMO checkpoints unchanged: local paths, zoo names and URLs, verified downloads.

Steps (timm's ``checkpoint_filter_fn`` style): safe load (``weights_only=True`` plus an allow-list of the
NumPy types MMPose stores in ``meta``) → unwrap ``state_dict`` → strip wrapper prefixes → infer size,
keypoints and input size from tensor shapes → ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtmo.config import CSPConfig, RTMOConfig
from rtmo.errors import CheckpointError, CheckpointIntegrityError, CheckpointUnavailableError
from rtmo.files import sha256_file
from rtmo.model import RTMO

__all__ = [
    "PRETRAINED_BACKBONES",
    "ZOO",
    "ZooEntry",
    "cache_dir",
    "checkpoint_sha256",
    "download",
    "infer_config",
    "load_checkpoint",
    "load_pretrained_backbone",
    "read_state_dict",
    "resolve_checkpoint",
]

LOGGER = logging.getLogger(__name__)

_ZOO_BASE = "https://download.openmmlab.com/mmpose/v1/projects/rtmo/"


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint: its URL and the SHA-256 prefix embedded in its file name."""

    url: str
    sha256_prefix: str | None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _zoo(filename: str) -> ZooEntry:
    return ZooEntry(_ZOO_BASE + filename, _hash_in_name(filename))


def _hash_in_name(filename: str) -> str | None:
    # OpenMMLab names files "<name>-<first 8 hex of sha256>[_<date>].pth".
    match = re.search(r"-([0-9a-f]{8})(?:_\d{8})?\.pth$", filename)
    return match.group(1) if match else None


# MMPose model zoo (configs/body_2d_keypoint/rtmo/*/*.yml @ 759b39c).
ZOO: dict[str, ZooEntry] = {
    "rtmo-s_coco": _zoo("rtmo-s_8xb32-600e_coco-640x640-8db55a59_20231211.pth"),
    "rtmo-m_coco": _zoo("rtmo-m_16xb16-600e_coco-640x640-6f4e0306_20231211.pth"),
    "rtmo-l_coco": _zoo("rtmo-l_16xb16-600e_coco-640x640-516a421f_20231211.pth"),
    "rtmo-t_body7": _zoo("rtmo-t_8xb32-600e_body7-416x416-f48f75cb_20231219.pth"),
    "rtmo-s_body7": _zoo("rtmo-s_8xb32-600e_body7-640x640-dac2bf74_20231211.pth"),
    "rtmo-m_body7": _zoo("rtmo-m_16xb16-600e_body7-640x640-39e78cc4_20231211.pth"),
    "rtmo-l_body7": _zoo("rtmo-l_16xb16-600e_body7-640x640-b37118ce_20231211.pth"),
    "rtmo-s_crowdpose": _zoo("rtmo-s_8xb32-700e_crowdpose-640x640-79f81c0d_20231211.pth"),
    # The published URL really has the double "r" (MMPose yml and README).
    "rtmo-m_crowdpose": _zoo("rrtmo-m_16xb16-700e_crowdpose-640x640-0eaf670d_20231211.pth"),
    "rtmo-l_crowdpose": _zoo("rtmo-l_16xb16-700e_crowdpose-640x640-1008211f_20231211.pth"),
    "rtmo-l_body7-crowdpose": _zoo("rtmo-l_16xb16-700e_body7-crowdpose-640x640-5bafdc11_20231219.pth"),
}

# YOLOX backbones MMPose's RTMO configs initialise from (``init_cfg`` with prefix ``backbone.``).
_MMDET = "https://download.openmmlab.com/mmdetection/v2.0/yolox/"
PRETRAINED_BACKBONES: dict[str, ZooEntry] = {
    "tiny": ZooEntry(_MMDET + "yolox_tiny_8x8_300e_coco/yolox_tiny_8x8_300e_coco_20211124_171234-b4047906.pth", "b4047906"),
    "small": ZooEntry(_MMDET + "yolox_s_8x8_300e_coco/yolox_s_8x8_300e_coco_20211121_095711-4592a793.pth", "4592a793"),
    # MMPose re-hosts the YOLOX-m weights without a hash in the name: nothing to verify against.
    "medium": ZooEntry("https://download.openmmlab.com/mmpose/v1/pretrained_models/yolox_m_8x8_300e_coco_20230829.pth", None),
    "large": ZooEntry(_MMDET + "yolox_l_8x8_300e_coco/yolox_l_8x8_300e_coco_20211126_140236-d3bd2b23.pth", "d3bd2b23"),
}

_STEM_CHANNELS_TO_SIZE = {24: "tiny", 32: "small", 48: "medium", 64: "large"}


def _numpy_safe_globals() -> list[Any]:
    """Exactly the NumPy objects pickled in MMPose checkpoint ``meta`` (dataset_meta arrays, numpy scalars)."""
    core = np.core.multiarray  # NumPy 1.x module path; NumPy 2 pickles name ``numpy._core.multiarray``
    entries: list[Any] = [np.ndarray, np.dtype, (core._reconstruct, "numpy.core.multiarray._reconstruct"),
                          (core.scalar, "numpy.core.multiarray.scalar"),
                          (core._reconstruct, "numpy._core.multiarray._reconstruct"),
                          (core.scalar, "numpy._core.multiarray.scalar")]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "UInt8DType", "BoolDType", "ObjectDType"):
        dtype_class = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_class is not None:
            entries.append(dtype_class)
    return entries


def cache_dir() -> Path:
    """Where downloads go: ``$RTMO_CACHE_DIR`` or ``~/.cache/rtmo``."""
    return Path(os.environ.get("RTMO_CACHE_DIR", Path.home() / ".cache" / "rtmo"))


def checkpoint_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (identifies the weights in build artifacts and model metadata)."""
    return sha256_file(path)


def download(entry: ZooEntry, *, timeout_s: float = 60.0) -> Path:
    """Download ``entry`` once into the cache, verify its hash prefix, and return the local path.

    Raises:
        CheckpointUnavailableError: the download failed (offline, HTTP error).
        CheckpointIntegrityError: the downloaded bytes do not match the pinned hash prefix.
    """
    target = cache_dir() / "checkpoints" / entry.filename
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.info("downloading %s", entry.url)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".part-", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(entry.url, timeout=timeout_s) as response:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    tmp.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            tmp_path.unlink(missing_ok=True)
            raise CheckpointUnavailableError(
                f"cannot download {entry.url}: {exc}. Download it elsewhere and pass the local .pth path instead."
            ) from exc
    digest = checkpoint_sha256(tmp_path)
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        tmp_path.unlink(missing_ok=True)
        raise CheckpointIntegrityError(
            f"{entry.url}: SHA-256 {digest[:16]}… does not start with the pinned {entry.sha256_prefix}; file discarded"
        )
    os.replace(tmp_path, target)
    return target


def resolve_checkpoint(source: str | os.PathLike[str]) -> Path:
    """Local path of a checkpoint given as a path, zoo name or URL (downloading and verifying it once)."""
    text = os.fspath(source)
    if text in ZOO:
        return download(ZOO[text])
    if text.startswith(("http://", "https://")):
        filename = text.rsplit("/", 1)[-1]
        return download(ZooEntry(text, _hash_in_name(filename)))
    path = Path(text)
    if not path.exists():
        raise CheckpointError(f"checkpoint {text!r}: no such file, and not a zoo name (known: {', '.join(sorted(ZOO))}) or URL")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {text!r}: is not a file")
    return path


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Safely unpickle a checkpoint; return (state_dict with wrapper prefixes stripped, meta).

    Raises:
        CheckpointIntegrityError: the file is truncated or corrupt.
        CheckpointError: the file holds something other than an MMPose checkpoint.
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
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
        raise CheckpointError(f"not an RTMO checkpoint: stem has {stem.shape[0]} channels, expected one of {sorted(_STEM_CHANNELS_TO_SIZE)}")
    return RTMOConfig(backbone_config=CSPConfig(size=size), num_classes=int(cls.shape[0]), num_keypoints=int(vis.shape[0]))


def load_checkpoint(source: str | os.PathLike[str], *, input_size: int | None = None) -> RTMO:
    """Build an ``RTMO`` from an MMPose RTMO checkpoint.

    Args:
        source: a local ``.pth`` path, a zoo name such as ``"rtmo-s_body7"`` (see ``ZOO``), or a URL.
        input_size: override the size's default input (416 tiny, 640 otherwise).

    Returns:
        The model in eval mode; ``model.checkpoint_sha256`` and ``model.checkpoint_name`` say where it came from.

    Raises:
        CheckpointError: not an RTMO checkpoint, or keys do not match (missing/unexpected keys listed).
        CheckpointIntegrityError: truncated file or hash mismatch.
        CheckpointUnavailableError: a zoo name or URL could not be downloaded.
    """
    path = resolve_checkpoint(source)
    state, _meta = read_state_dict(path)
    config = infer_config(state)
    if input_size is not None:
        config = RTMOConfig(backbone_config=config.backbone_config, num_classes=config.num_classes,
                            num_keypoints=config.num_keypoints, input_size=input_size)
    model = RTMO(config)
    _load_strict(model, state, origin=str(path))
    model.checkpoint_sha256 = checkpoint_sha256(path)  # type: ignore[assignment]
    model.checkpoint_name = os.fspath(source)  # type: ignore[assignment]
    return model.eval()


def _load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, origin: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
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
    backbone_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    _load_strict(model.backbone, backbone_state, origin=entry.url)
