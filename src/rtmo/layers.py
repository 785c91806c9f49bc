"""Blocks shared by backbone, neck and head, named so MMPose state-dict keys load unchanged."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvModule", "DEFAULT_BN", "Swish", "YOLO_BN"]

# (eps, momentum) of the two BatchNorm flavours RTMO uses: YOLOX-style in backbone and head, torch default in neck.
YOLO_BN = (1e-3, 0.03)
DEFAULT_BN = (1e-5, 0.1)


class Swish(nn.Module):
    """x · sigmoid(x) computed as mmcv's ``Swish`` does; same function as SiLU but rounds differently, and
    matching MMPose's rounding keeps sharp DCC heatmaps (and so keypoints) within 0.01 px of MMPose."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class ConvModule(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + activation: mmcv's ``ConvModule`` key layout ``conv``/``bn``.

    ``act`` is ``"swish"`` (backbone and head, YOLOX style), ``"silu"`` (neck, ``nn.SiLU``) or ``None``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bn: tuple[float, float] = YOLO_BN,
        act: str | None = "swish",
    ) -> None:
        super().__init__()
        if padding is None:
            padding = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn[0], momentum=bn[1])
        if act not in ("swish", "silu", None):
            raise ValueError(f"act: got {act!r}; accepted: 'swish', 'silu', None")
        self.act = Swish() if act == "swish" else nn.SiLU() if act == "silu" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))
