"""Restormer (Zamir et al., CVPR 2022): the shared backbone of PromptIR, DFPIR, Perceive-IR and ClearAIR.

Blocks: channel-wise LayerNorm (with-bias or bias-free), MDTA (transposed, channel-wise attention with a learned
temperature), GDFN (gated depthwise-conv feed-forward), TransformerBlock, overlapping patch embedding and
pixel-(un)shuffle down/up-sampling. ``Restormer`` is the 4-level U-shape with a refinement stage and a global
residual; the ``paper`` preset has exactly 26,126,644 parameters (with-bias LayerNorm).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .presets import PresetMixin


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at every pixel (biased variance, eps 1e-5). ``bias_free`` drops the mean
    subtraction and the bias, as Restormer's denoising configs do."""

    def __init__(self, channels: int, bias_free: bool = False, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = None if bias_free else nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            var = x.var(dim=1, keepdim=True, unbiased=False)
            return x / torch.sqrt(var + self.eps) * self.weight[:, None, None]
        # torch's fused layer norm over the last dimension of a channels-last view: 3-5x faster on a CPU than a
        # reduction across NCHW channels; the result keeps channels-last strides, which the convolutions take
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention: attention across channels (a C/h x C/h map per head)."""

    def __init__(self, dim: int, heads: int, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network: GELU(x1) * x2 after a depthwise conv, hidden = int(dim * factor)."""

    def __init__(self, dim: int, factor: float = 2.66, bias: bool = False):
        super().__init__()
        hidden = int(dim * factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_factor: float = 2.66, bias: bool = False, bias_free_norm: bool = False,
                 eps: float = 1e-5):  # fmt: skip
        super().__init__()
        self.norm1 = LayerNorm2d(dim, bias_free_norm, eps)
        self.attn = MDTA(dim, heads, bias)
        self.norm2 = LayerNorm2d(dim, bias_free_norm, eps)
        self.ffn = GDFN(dim, ffn_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def blocks(n: int, dim: int, heads: int, ffn: float, bias: bool, bias_free: bool, eps: float = 1e-5) -> nn.Sequential:
    return nn.Sequential(*[TransformerBlock(dim, heads, ffn, bias, bias_free, eps) for _ in range(n)])


class Downsample(nn.Sequential):
    """3x3 conv n -> n/2, PixelUnshuffle(2): 2n channels at half resolution."""

    def __init__(self, n: int):
        super().__init__(nn.Conv2d(n, n // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))


class Upsample(nn.Sequential):
    """3x3 conv n -> 2n, PixelShuffle(2): n/2 channels at double resolution."""

    def __init__(self, n: int):
        super().__init__(nn.Conv2d(n, n * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))


class RestormerEncoderMixin:
    """The 4-level Restormer encoder shared by Restormer, PromptIR and DFPIR (same attribute names, so the same
    state-dict keys): patch embedding, encoder levels 1-3 with their downsamplers, and the latent blocks."""

    def _build_encoder(self, in_channels, dim, nb, hd, ffn, bias, bias_free, latent: bool = True):
        self.patch_embed = nn.Conv2d(in_channels, dim, 3, padding=1, bias=bias)
        self.encoder_level1 = blocks(nb[0], dim, hd[0], ffn, bias, bias_free)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = blocks(nb[1], dim * 2, hd[1], ffn, bias, bias_free)
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = blocks(nb[2], dim * 4, hd[2], ffn, bias, bias_free)
        self.down3_4 = Downsample(dim * 4)
        if latent:  # Perceive-IR builds its own (guided) latent stage
            self.latent = blocks(nb[3], dim * 8, hd[3], ffn, bias, bias_free)

    def encode(self, x: torch.Tensor):
        """(e1, e2, e3, latent) at 1, 1/2, 1/4, 1/8 of the input size."""
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be a multiple of 8; pad it first")
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        return e1, e2, e3, self.latent(self.down3_4(e3))


PRESETS = {
    "tiny": dict(dim=8, num_blocks=(1, 1, 1, 1), heads=(1, 1, 2, 2), num_refinement_blocks=1),
    "small": dict(dim=24, num_blocks=(2, 3, 3, 4), heads=(1, 2, 4, 8), num_refinement_blocks=2),
    "paper": dict(dim=48, num_blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8), num_refinement_blocks=4),
}


class Restormer(RestormerEncoderMixin, ModelMixin, ConfigMixin, PresetMixin):
    """The Restormer U-shape: encoder levels at dim, 2dim, 4dim, 8dim; decoder levels 3 and 2 reduce the skip
    concatenation by a 1x1 conv, level 1 keeps 2dim channels; refinement blocks; 3x3 output conv + the input.

    Inputs: (B, C, H, W) in [-1, 1] or [0, 1] (the model is range-agnostic); H and W multiples of 8.
    """

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
        bias: bool = False,
        bias_free_norm: bool = False,
    ):
        super().__init__()
        nb, hd, ffn, bf = list(num_blocks), list(heads), ffn_expansion_factor, bias_free_norm
        self._build_encoder(in_channels, dim, nb, hd, ffn, bias, bf)
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = blocks(nb[2], dim * 4, hd[2], ffn, bias, bf)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = blocks(nb[1], dim * 2, hd[1], ffn, bias, bf)
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = blocks(nb[0], dim * 2, hd[0], ffn, bias, bf)
        self.refinement = blocks(num_refinement_blocks, dim * 2, hd[0], ffn, bias, bf)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    downsample_factor = 8

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        e1, e2, e3, lat = self.encode(x)
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1))
        return self.output(self.refinement(d1)) + x
