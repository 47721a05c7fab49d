"""Perceive-IR (TIP 2025), the restoration network of stage 2.

* Encoder: Restormer transformer blocks at levels 1-3 (dim, 2dim, 4dim).
* Guidance: a degradation code Z (``CompactFeatureExtractor`` on the low-quality input, 128-d, trained with the
  network) and semantic features F_l (frozen DINOv2 CLS tokens of layers 1 / 4 / 8 / 12, computed outside the
  model by ``defusion.perception.SemanticEncoder`` and passed in as ``semantic``). Layer 12 guides the latent,
  8 decoder level 3, 4 level 2, 1 level 1.
* PGM (per level): Linear([F_l; Z] -> 2C), GELU, Linear(2C -> 2C) gives (gamma, beta); the guidance is
  Y = X (1 + gamma) + beta, computed once per level from the stage input X.
* ETB (latent and decoder blocks): cross = PGCA(LN(X), LN(Y)) with the query from Y and key / value from X
  (channel-transposed attention as in MDTA); X_m = Y + MDTA(LN(cross)); out = X_m + GDFN(LN(X_m)). Every block
  of a stage reuses the stage's Y.
* Decoder: each level concatenates the skip and reduces to the level width with a 1x1 conv (level 1 too, to
  ``dim``); refinement blocks at ``dim``; 3x3 output conv plus the input.

The paper reports 42.02M parameters; the reference study could not reconcile that with the architecture
(about 34M), so no paper count is asserted.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..perception.cfe import CompactFeatureExtractor
from .presets import PresetMixin
from .restormer import GDFN, MDTA, LayerNorm2d, RestormerEncoderMixin, Upsample, blocks


class PGM(nn.Module):
    """Perception-guided modulation: [F_l; Z] -> (gamma, beta) -> Y = X (1 + gamma) + beta."""

    def __init__(self, dim: int, guide_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(guide_dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, 2 * dim))

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.mlp(guide)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + gamma) + beta


class PGCA(nn.Module):
    """Perception-guided cross-attention: channel-transposed attention, query from Y, key and value from X."""

    def __init__(self, dim: int, heads: int, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=bias), nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias))
        self.kv = nn.Sequential(nn.Conv2d(dim, 2 * dim, 1, bias=bias),
                                nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim, bias=bias))  # fmt: skip
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(y)
        k, v = self.kv(x).chunk(2, dim=1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class ETB(nn.Module):
    """Enhanced transformer block (paper Eqs. 3, 7, 8)."""

    def __init__(self, dim: int, heads: int, ffn: float = 2.66, bias: bool = False):
        super().__init__()
        self.norm_x, self.norm_y = LayerNorm2d(dim), LayerNorm2d(dim)
        self.pgca = PGCA(dim, heads, bias)
        self.norm_cross = LayerNorm2d(dim)
        self.attn = MDTA(dim, heads, bias)
        self.norm_ffn = LayerNorm2d(dim)
        self.ffn = GDFN(dim, ffn, bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cross = self.pgca(self.norm_x(x), self.norm_y(y))
        xm = y + self.attn(self.norm_cross(cross))
        return xm + self.ffn(self.norm_ffn(xm))


class GuidedStage(nn.Module):
    """A PGM followed by ``n`` ETBs that all use the stage's guidance Y."""

    def __init__(self, n: int, dim: int, heads: int, guide_dim: int, ffn: float, bias: bool):
        super().__init__()
        self.pgm = PGM(dim, guide_dim)
        self.blocks = nn.ModuleList([ETB(dim, heads, ffn, bias) for _ in range(n)])

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        y = self.pgm(x, guide)
        for blk in self.blocks:
            x = blk(x, y)
        return x


PRESETS = {
    "tiny": dict(dim=8, num_blocks=(1, 1, 1, 1), heads=(1, 1, 2, 2), num_refinement_blocks=1, semantic_dim=32,
                 cfe_channels=(8, 8, 16, 16), cfe_dim=16),  # fmt: skip
    "small": dict(dim=24, num_blocks=(2, 3, 3, 4), heads=(1, 2, 4, 8), num_refinement_blocks=2, semantic_dim=32),
    "paper": dict(dim=48, num_blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8), num_refinement_blocks=4, semantic_dim=768),
}


class PerceiveIR(RestormerEncoderMixin, ModelMixin, ConfigMixin, PresetMixin):
    """``forward(x, semantic)``: ``semantic`` is the list of 4 (B, semantic_dim) DINOv2 CLS features for layers
    ``semantic_layers`` (1, 4, 8, 12). ``small`` and ``tiny`` expect the fallback DINOv2's width (32); give
    ``semantic_dim=768`` with real ``dinov2-base`` features."""

    PRESETS = PRESETS

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        heads: Sequence[int] = (1, 2, 4, 8),
        num_refinement_blocks: int = 4,
        ffn_expansion_factor: float = 2.66,
        semantic_dim: int = 768,
        semantic_layers: Sequence[int] = (1, 4, 8, 12),
        cfe_channels: Sequence[int] = (32, 64, 96, 128),
        cfe_dim: int = 128,
        bias: bool = False,
    ):
        super().__init__()
        nb, hd, ffn = list(num_blocks), list(heads), ffn_expansion_factor
        g = semantic_dim + cfe_dim
        self.cfe = CompactFeatureExtractor(in_channels, tuple(cfe_channels), cfe_dim)
        self._build_encoder(in_channels, dim, nb, hd, ffn, bias, False, latent=False)
        self.latent = GuidedStage(nb[3], dim * 8, hd[3], g, ffn, bias)
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = GuidedStage(nb[2], dim * 4, hd[2], g, ffn, bias)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = GuidedStage(nb[1], dim * 2, hd[1], g, ffn, bias)
        self.up2_1 = Upsample(dim * 2)
        self.reduce_chan_level1 = nn.Conv2d(dim * 2, dim, 1, bias=bias)
        self.decoder_level1 = GuidedStage(nb[0], dim, hd[0], g, ffn, bias)
        self.refinement = blocks(num_refinement_blocks, dim, hd[0], ffn, bias, False)
        self.output = nn.Conv2d(dim, out_channels, 3, padding=1, bias=bias)

    downsample_factor = 8
    conditions = ("semantic",)

    def forward(self, x: torch.Tensor, semantic=None, z: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """``x``: (B, 3, H, W), H and W multiples of 8. ``z``: the degradation code (default: ``self.cfe(x)``)."""
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be a multiple of 8; pad it first")
        n, d = len(self.config.semantic_layers), self.config.semantic_dim
        if semantic is None or len(semantic) != n or any(f.shape != (x.shape[0], d) for f in semantic):
            got = None if semantic is None else [tuple(f.shape) for f in semantic]
            raise ValueError(f"semantic must be {n} tensors of shape (B, {d}) (SemanticEncoder output), got {got}")
        z = self.cfe(x) if z is None else z
        f1, f4, f8, f12 = (torch.cat([f.to(z.dtype), z], dim=1) for f in semantic)
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        lat = self.latent(self.down3_4(e3), f12)
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1)), f8)
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)), f4)
        d1 = self.decoder_level1(self.reduce_chan_level1(torch.cat([self.up2_1(d2), e1], 1)), f1)
        return self.output(self.refinement(d1)) + x
