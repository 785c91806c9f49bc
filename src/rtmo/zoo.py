"""Where checkpoints come from: MMPose's model zoo by name, URLs and local paths; downloads verified and cached.

No PyTorch here: ``rtmo serve`` hashes a checkpoint and reuses its cached export without loading it.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rtmo.errors import CheckpointError, CheckpointIntegrityError, CheckpointUnavailableError
from rtmo.files import sha256_file

__all__ = [
    "PRETRAINED_BACKBONES",
    "ZOO",
    "ZooEntry",
    "cache_dir",
    "checkpoint_sha256",
    "download",
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
    "tiny": ZooEntry(
        _MMDET + "yolox_tiny_8x8_300e_coco/yolox_tiny_8x8_300e_coco_20211124_171234-b4047906.pth", "b4047906"
    ),
    "small": ZooEntry(_MMDET + "yolox_s_8x8_300e_coco/yolox_s_8x8_300e_coco_20211121_095711-4592a793.pth", "4592a793"),
    # MMPose re-hosts the YOLOX-m weights without a hash in the name: nothing to verify against.
    "medium": ZooEntry(
        "https://download.openmmlab.com/mmpose/v1/pretrained_models/yolox_m_8x8_300e_coco_20230829.pth", None
    ),
    "large": ZooEntry(_MMDET + "yolox_l_8x8_300e_coco/yolox_l_8x8_300e_coco_20211126_140236-d3bd2b23.pth", "d3bd2b23"),
}


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
        raise CheckpointError(
            f"checkpoint {text!r}: no such file, and not a zoo name (known: {', '.join(sorted(ZOO))}) or URL"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {text!r}: is not a file")
    return path
