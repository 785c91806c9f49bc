"""CSP-Darknet P5 backbone (YOLOX), as MMPose's ``CSPDarknet`` with ``out_indices=(2, 3, 4)``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rtmo.layers import ConvModule

__all__ = ["CSPDarknet", "FeatureInfo"]

# (in, out, blocks, residual in blocks, SPP) per stage at widen=deepen=1 (MMPose ``arch_settings['P5']``).
_P5_STAGES = (
    (64, 128, 3, True, False),
    (128, 256, 9, True, False),
    (256, 512, 9, True, False),
    (512, 1024, 3, False, True),
)


@dataclass(frozen=True)
class FeatureInfo:
    """Channels and stride of one backbone output, used to wire the neck."""

    channels: int
    stride: int


class Focus(nn.Module):
    """Space-to-depth (2x2 → channels) followed by a 3x3 conv."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvModule(12, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Order matters for pretrained weights: top-left, bottom-left, top-right, bottom-right.
        x = torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1)
        return self.conv(x)


class SPPBottleneck(nn.Module):
    """1x1 conv, max-pools of several kernel sizes concatenated, 1x1 conv."""

    def __init__(self, channels: int, kernel_sizes: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        mid = channels // 2
        self.conv1 = ConvModule(channels, mid, 1)
        self.poolings = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvModule(mid * (len(kernel_sizes) + 1), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.poolings)], dim=1))


class DarknetBottleneck(nn.Module):
    """1x1 conv then 3x3 conv, with an optional identity shortcut."""

    def __init__(self, channels: int, *, add_identity: bool) -> None:
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 1)
        self.conv2 = ConvModule(channels, channels, 3)
        self.add_identity = add_identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    """Cross-stage partial layer: a main path through bottlenecks and a short path, concatenated."""

    def __init__(self, channels: int, *, num_blocks: int, add_identity: bool) -> None:
        super().__init__()
        mid = channels // 2
        self.main_conv = ConvModule(channels, mid, 1)
        self.short_conv = ConvModule(channels, mid, 1)
        self.final_conv = ConvModule(2 * mid, channels, 1)
        self.blocks = nn.Sequential(*(DarknetBottleneck(mid, add_identity=add_identity) for _ in range(num_blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1))


class CSPDarknet(nn.Module):
    """CSP-Darknet P5 returning the stride 8, 16 and 32 feature maps.

    Args:
        widen_factor: channel multiplier.
        deepen_factor: block-count multiplier.
    """

    def __init__(self, *, widen_factor: float, deepen_factor: float) -> None:
        super().__init__()
        self.stem = Focus(int(_P5_STAGES[0][0] * widen_factor))
        self.feature_info: list[FeatureInfo] = []
        for index, (c_in, c_out, blocks, add_identity, use_spp) in enumerate(_P5_STAGES, start=1):
            c_in, c_out = int(c_in * widen_factor), int(c_out * widen_factor)
            layers: list[nn.Module] = [ConvModule(c_in, c_out, 3, stride=2)]
            if use_spp:
                layers.append(SPPBottleneck(c_out))
            num_blocks = max(round(blocks * deepen_factor), 1)
            layers.append(CSPLayer(c_out, num_blocks=num_blocks, add_identity=add_identity))
            self.add_module(f"stage{index}", nn.Sequential(*layers))
            if index >= 2:
                self.feature_info.append(FeatureInfo(channels=c_out, stride=2 ** (index + 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stage1(self.stem(x))
        s8 = self.stage2(x)
        s16 = self.stage3(s8)
        s32 = self.stage4(s16)
        return s8, s16, s32
