"""HybridEncoder neck (RT-DETR style) with a channel-mapping projector, as MMPose's RTMO configs build it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtmo.layers import DEFAULT_BN, ConvModule

__all__ = ["HybridEncoder", "sine_positional_encoding_2d"]


def sine_positional_encoding_2d(height: int, width: int, dim_t: torch.Tensor) -> torch.Tensor:
    """Row-major 2-D sine encoding: per token ``[cos(r/t), sin(r/t), cos(c/t), sin(c/t)]``, shape (1, H*W, 4*len(t))."""
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=dim_t.device),
        torch.arange(width, dtype=torch.float32, device=dim_t.device),
        indexing="ij",
    )
    freq_r = rows.flatten()[:, None] / dim_t
    freq_c = cols.flatten()[:, None] / dim_t
    enc = torch.cat((freq_r.cos(), freq_r.sin(), freq_c.cos(), freq_c.sin()), dim=-1)
    return enc.unsqueeze(0)


class SinePositionalEncoding(nn.Module):
    """Holds the frequency buffer ``dim_t`` (stored in MMPose checkpoints)."""

    def __init__(self, channels: int, temperature: float) -> None:
        super().__init__()
        half = channels // 2
        self.register_buffer("dim_t", temperature ** (torch.arange(half, dtype=torch.float32) / half))

    def forward(self, height: int, width: int) -> torch.Tensor:
        return sine_positional_encoding_2d(height, width, self.dim_t)


class RepVGGBlock(nn.Module):
    """Sum of a 3x3 and a 1x1 conv branch (each with BN), then SiLU; no identity branch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch_3x3 = ConvModule(channels, channels, 3, bn=DEFAULT_BN, act=None)
        self.branch_1x1 = ConvModule(channels, channels, 1, bn=DEFAULT_BN, act=None)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch_3x3(x) + self.branch_1x1(x))


class CSPRepLayer(nn.Module):
    """Two 1x1 paths, one through RepVGG blocks, summed, then an optional 1x1 projection."""

    def __init__(self, in_channels: int, out_channels: int, *, num_blocks: int, widen_factor: float) -> None:
        super().__init__()
        hidden = int(out_channels * widen_factor)
        self.conv1 = ConvModule(in_channels, hidden, 1, bn=DEFAULT_BN, act="silu")
        self.conv2 = ConvModule(in_channels, hidden, 1, bn=DEFAULT_BN, act="silu")
        self.bottlenecks = nn.Sequential(*(RepVGGBlock(hidden) for _ in range(num_blocks)))
        # MMPose uses Identity (no keys) when no projection is needed (size large).
        self.conv3 = (
            ConvModule(hidden, out_channels, 1, bn=DEFAULT_BN, act="silu") if hidden != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class SelfAttention(nn.Module):
    """mmcv ``MultiheadAttention``: positions added to query and key only, identity residual inside."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        q = x + pos
        # need_weights=True takes the same (non-fused) path as mmcv, so rounding matches MMPose.
        return x + self.attn(q, q, x, need_weights=True)[0]


class FeedForward(nn.Module):
    """Linear → GELU → Linear with identity residual; keys ``layers.0.0`` and ``layers.1`` like mmcv ``FFN``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), nn.GELU()), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class EncoderLayer(nn.Module):
    """Post-norm DETR encoder layer: attention (+res) → LN → FFN (+res) → LN."""

    def __init__(self, dim: int = 256, num_heads: int = 8, ffn_dim: int = 1024) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, num_heads)
        self.ffn = FeedForward(dim, ffn_dim)
        self.norms = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.norms[0](self.self_attn(x, pos))
        return self.norms[1](self.ffn(x))


class TransformerEncoder(nn.Module):
    def __init__(self, num_layers: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, pos)
        return x


class ChannelMapper(nn.Module):
    """1x1 conv + BN (no activation) per level."""

    def __init__(self, in_channels: int, out_channels: int, num_levels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            ConvModule(in_channels, out_channels, 1, bn=DEFAULT_BN, act=None) for _ in range(num_levels)
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(f) for conv, f in zip(self.convs, feats)]


class HybridEncoder(nn.Module):
    """Transformer on the stride-32 level, then top-down FPN and bottom-up PAN; outputs strides 16 and 32.

    Args:
        in_channels: backbone channels at strides 8, 16, 32.
        out_channels: projector output channels per level.
        widen_factor: CSPRepLayer hidden-width multiplier.
        deepen_factor: RepVGG block-count multiplier.
        hidden_dim: working width of the neck.
    """

    def __init__(
        self,
        in_channels: tuple[int, int, int],
        out_channels: int,
        *,
        widen_factor: float,
        deepen_factor: float,
        hidden_dim: int = 256,
        pe_temperature: float = 10000.0,
    ) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        num_blocks = round(3 * deepen_factor)
        self.input_proj = nn.ModuleList(ConvModule(c, hidden_dim, 1, bn=DEFAULT_BN, act=None) for c in in_channels)
        self.encoder = nn.ModuleList([TransformerEncoder(1, hidden_dim)])
        self.sincos_pos_enc = SinePositionalEncoding(hidden_dim // 2, pe_temperature)

        def rep_layer() -> CSPRepLayer:
            return CSPRepLayer(hidden_dim * 2, hidden_dim, num_blocks=num_blocks, widen_factor=widen_factor)

        self.lateral_convs = nn.ModuleList(
            ConvModule(hidden_dim, hidden_dim, 1, bn=DEFAULT_BN, act="silu") for _ in range(2)
        )
        self.fpn_blocks = nn.ModuleList(rep_layer() for _ in range(2))
        self.downsample_convs = nn.ModuleList(
            ConvModule(hidden_dim, hidden_dim, 3, stride=2, bn=DEFAULT_BN, act="silu") for _ in range(2)
        )
        self.pan_blocks = nn.ModuleList(rep_layer() for _ in range(2))
        self.projector = ChannelMapper(hidden_dim, out_channels, num_levels=2)

    def forward(self, feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = (proj(f) for proj, f in zip(self.input_proj, feats))
        batch, channels, h, w = p5.shape
        tokens = p5.flatten(2).permute(0, 2, 1)
        tokens = self.encoder[0](tokens, self.sincos_pos_enc(h, w))
        p5 = tokens.permute(0, 2, 1).reshape(-1, channels, h, w)

        # Top-down: lateral 1x1 on the coarser level, upsample, fuse with the finer projection.
        lat5 = self.lateral_convs[0](p5)
        f4 = self.fpn_blocks[0](torch.cat([F.interpolate(lat5, scale_factor=2.0, mode="nearest"), p4], dim=1))
        lat4 = self.lateral_convs[1](f4)
        f3 = self.fpn_blocks[1](torch.cat([F.interpolate(lat4, scale_factor=2.0, mode="nearest"), p3], dim=1))
        # Bottom-up: stride-2 conv, fuse with the lateral of the same level.
        n4 = self.pan_blocks[0](torch.cat([self.downsample_convs[0](f3), lat4], dim=1))
        n5 = self.pan_blocks[1](torch.cat([self.downsample_convs[1](n4), lat5], dim=1))
        return self.projector([n4, n5])
