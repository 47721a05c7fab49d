"""PromptIR (Potlapalli et al., NeurIPS 2023): Restormer with prompt blocks in the decoder, the all-in-one baseline.

A Prompt Generation Block mixes ``prompt_len`` learned prompt tensors by softmax weights predicted from the
globally pooled feature, resizes the mix to the feature's size and applies a 3x3 conv; the decoder concatenates
the prompt with the feature and fuses them with one transformer block and a 1x1 conv ("prompt interaction").

Parameters: the ``paper`` preset has 35,376,967. The reference code defines six 1x1 convs that its forward never
uses (0.215M; 35,592,263 in total, and the reason its training needs ``find_unused_parameters``); they are not
built here.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .presets import PresetMixin
from .restormer import RestormerEncoderMixin, TransformerBlock, Upsample, blocks


class PromptGenBlock(nn.Module):
    def __init__(self, prompt_dim: int, prompt_len: int, prompt_size: int, lin_dim: int):
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weights = self.linear_layer(x.mean(dim=(-2, -1))).softmax(dim=1)  # (B, prompt_len)
        prompt = (weights[:, :, None, None, None] * self.prompt_param).sum(dim=1)
        prompt = F.interpolate(prompt, (h, w), mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


PRESETS = {
    "tiny": dict(dim=8, num_blocks=(1, 1, 1, 1), heads=(1, 1, 2, 2), num_refinement_blocks=1,
                 prompt_dims=(8, 16, 24), prompt_sizes=(8, 4, 2), prompt_heads=2),
    "small": dict(dim=24, num_blocks=(2, 3, 3, 4), heads=(1, 2, 4, 8), num_refinement_blocks=2,
                  prompt_dims=(32, 64, 160), prompt_sizes=(32, 16, 8), prompt_heads=4),
    "paper": dict(dim=48, num_blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8), num_refinement_blocks=4,
                  prompt_dims=(64, 128, 320), prompt_sizes=(64, 32, 16), prompt_heads=4),
}  # fmt: skip


class PromptIR(RestormerEncoderMixin, ModelMixin, ConfigMixin, PresetMixin):
    """PromptIR with ``decoder=True`` (the published model). Inputs (B, 3, H, W), H and W multiples of 8."""

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
        prompt_dims: Sequence[int] = (64, 128, 320),
        prompt_sizes: Sequence[int] = (64, 32, 16),
        prompt_len: int = 5,
        prompt_heads: int = 4,
        bias: bool = False,
        bias_free_norm: bool = False,
    ):
        super().__init__()
        nb, hd, ffn, bf = list(num_blocks), list(heads), ffn_expansion_factor, bias_free_norm
        p1, p2, p3 = prompt_dims
        self._build_encoder(in_channels, dim, nb, hd, ffn, bias, bf)
        # prompt blocks: pooled from the latent / decoder level 3 / decoder level 2
        self.prompt3 = PromptGenBlock(p3, prompt_len, prompt_sizes[2], dim * 8)
        self.prompt2 = PromptGenBlock(p2, prompt_len, prompt_sizes[1], dim * 4)
        self.prompt1 = PromptGenBlock(p1, prompt_len, prompt_sizes[0], dim * 2)
        self.noise_level3 = TransformerBlock(dim * 8 + p3, prompt_heads, ffn, bias, bf)
        self.reduce_noise_level3 = nn.Conv2d(dim * 8 + p3, dim * 4, 1, bias=bias)
        self.up4_3 = Upsample(dim * 4)
        self.reduce_chan_level3 = nn.Conv2d(dim * 2 + dim * 4, dim * 4, 1, bias=bias)
        self.decoder_level3 = blocks(nb[2], dim * 4, hd[2], ffn, bias, bf)
        self.noise_level2 = TransformerBlock(dim * 4 + p2, prompt_heads, ffn, bias, bf)
        self.reduce_noise_level2 = nn.Conv2d(dim * 4 + p2, dim * 4, 1, bias=bias)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = blocks(nb[1], dim * 2, hd[1], ffn, bias, bf)
        self.noise_level1 = TransformerBlock(dim * 2 + p1, prompt_heads, ffn, bias, bf)
        self.reduce_noise_level1 = nn.Conv2d(dim * 2 + p1, dim * 2, 1, bias=bias)
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = blocks(nb[0], dim * 2, hd[0], ffn, bias, bf)
        self.refinement = blocks(num_refinement_blocks, dim * 2, hd[0], ffn, bias, bf)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    downsample_factor = 8

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        e1, e2, e3, lat = self.encode(x)
        lat = self.reduce_noise_level3(self.noise_level3(torch.cat([lat, self.prompt3(lat)], 1)))
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1)))
        d3 = self.reduce_noise_level2(self.noise_level2(torch.cat([d3, self.prompt2(d3)], 1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)))
        d2 = self.reduce_noise_level1(self.noise_level1(torch.cat([d2, self.prompt1(d2)], 1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1))
        return self.output(self.refinement(d1)) + x
