"""Model configuration: sizes are data, validated in ``__post_init__``."""

from __future__ import annotations

from dataclasses import dataclass, field

from rtmo.errors import ConfigError

__all__ = ["CSPConfig", "RTMOConfig", "SizeSpec", "SIZE_SPECS", "canonical_size"]


@dataclass(frozen=True)
class SizeSpec:
    """Width/depth multipliers and the default square input of one RTMO size (MMPose configs)."""

    widen_factor: float
    deepen_factor: float
    input_size: int


SIZE_SPECS: dict[str, SizeSpec] = {
    "tiny": SizeSpec(widen_factor=0.375, deepen_factor=0.33, input_size=416),
    "small": SizeSpec(widen_factor=0.5, deepen_factor=0.33, input_size=640),
    "medium": SizeSpec(widen_factor=0.75, deepen_factor=0.67, input_size=640),
    "large": SizeSpec(widen_factor=1.0, deepen_factor=1.0, input_size=640),
}
_SIZE_ALIASES = {"t": "tiny", "s": "small", "m": "medium", "l": "large"}


def canonical_size(size: str) -> str:
    """Map ``t|s|m|l`` or a full size name to the full name, or raise ``ConfigError``."""
    name = _SIZE_ALIASES.get(size, size)
    if name not in SIZE_SPECS:
        accepted = ", ".join([*SIZE_SPECS, *_SIZE_ALIASES])
        raise ConfigError(f"CSPConfig.size: got {size!r}; accepted: {accepted}")
    return name


@dataclass
class CSPConfig:
    """CSP-Darknet (P5) backbone configuration.

    Args:
        size: ``tiny|small|medium|large`` (or ``t|s|m|l``).
    """

    size: str = "small"

    def __post_init__(self) -> None:
        self.size = canonical_size(self.size)

    @property
    def spec(self) -> SizeSpec:
        return SIZE_SPECS[self.size]


@dataclass
class RTMOConfig:
    """Whole-model configuration, MMPose RTMO defaults.

    Args:
        backbone_config: backbone size and pretrained flag; it also sets neck and head widths.
        num_classes: detection classes (MMPose RTMO uses 1, "person").
        num_keypoints: 17 (COCO, body7) or 14 (CrowdPose).
        input_size: square network input side; ``None`` takes the size's default (416 tiny, 640 otherwise).
    """

    backbone_config: CSPConfig = field(default_factory=CSPConfig)
    num_classes: int = 1
    num_keypoints: int = 17
    input_size: int | None = None
    featmap_strides: tuple[int, ...] = (16, 32)
    bbox_padding: float = 1.25
    dcc_feat_channels: int = 128
    dcc_num_bins: tuple[int, int] = (192, 256)

    def __post_init__(self) -> None:
        if not isinstance(self.backbone_config, CSPConfig):
            raise ConfigError(
                f"RTMOConfig.backbone_config: got {type(self.backbone_config).__name__}; accepted: CSPConfig"
            )
        if self.num_classes < 1:
            raise ConfigError(f"RTMOConfig.num_classes: got {self.num_classes}; accepted: an integer >= 1")
        if self.num_keypoints < 1:
            raise ConfigError(
                f"RTMOConfig.num_keypoints: got {self.num_keypoints}; accepted: an integer >= 1 (17 COCO, 14 CrowdPose)"
            )
        if self.input_size is None:
            self.input_size = self.backbone_config.spec.input_size
        if self.input_size <= 0 or self.input_size % 32:
            raise ConfigError(f"RTMOConfig.input_size: got {self.input_size}; accepted: a positive multiple of 32")

    @property
    def widen_factor(self) -> float:
        return self.backbone_config.spec.widen_factor

    @property
    def deepen_factor(self) -> float:
        return self.backbone_config.spec.deepen_factor

    @property
    def projector_channels(self) -> int:
        """Channels of each neck output level; the head splits them in half (cls | pose)."""
        return int(512 * self.widen_factor)

    @property
    def pose_vec_channels(self) -> int:
        return self.projector_channels
