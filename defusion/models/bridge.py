"""The Image Restoration Bridge: a light conv pyramid from the low-quality image to AdaLN-Zero modulations.

A T2I-Adapter-like feature extractor (a stem and one residual block per level, stride-2 convs between levels)
produces one feature map per U-Net encoder resolution; a zero-initialised 1x1 head per level turns it into
``(scale, shift, gate)`` for that level (``DefusionUNet`` applies them). With zero heads the gate is 0, so a
pretrained U-Net starts exactly unchanged (AdaLN-Zero, as in DiT).
"""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .compact import CompactWeightsMixin


class _ResBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )  # fmt: skip

    def forward(self, x):
        return x + self.block(x)


class ImageRestorationBridge(CompactWeightsMixin, ModelMixin, ConfigMixin):
    """Args:
    in_channels: channels of the low-quality image (3).
    feature_channels: the bridge's own width per level.
    unet_channels: channels at the input of each U-Net down block (``DefusionUNet.encoder_channels``).
    norm_num_groups: groups of the bridge's GroupNorms.
    patch_size: the U-Net's pixel-unshuffle factor (level 0 is at 1 / patch_size of the image).
    modulate_skip: the U-Net takes its level-0 skip after the modulation (True, what ``for_unet`` builds: the LQ
        image also reaches the last decoder block) or before it (False: how checkpoints trained before this
        option existed, such as the 2026-11-22 ``defusion-small-preview``, were trained; a config without the key
        loads as False).
    num_res_blocks: residual blocks per level (T2I-Adapter uses 2; the shipped ``defusion-small`` uses 3).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        feature_channels: Sequence[int] = (32, 64, 128, 128),
        unet_channels: Sequence[int] = (32, 32, 64, 128),
        norm_num_groups: int = 8,
        patch_size: int = 1,
        modulate_skip: bool = False,
        num_res_blocks: int = 1,
    ):
        super().__init__()
        if len(feature_channels) != len(unet_channels):
            raise ValueError(f"feature_channels {feature_channels} and unet_channels {unet_channels} differ in length")
        fc = list(feature_channels)
        self.unshuffle = nn.PixelUnshuffle(patch_size) if patch_size > 1 else nn.Identity()
        self.stem = nn.Conv2d(in_channels * patch_size * patch_size, fc[0], 3, padding=1)
        self.downs = nn.ModuleList(
            [nn.Identity()] + [nn.Conv2d(fc[i - 1], fc[i], 3, stride=2, padding=1) for i in range(1, len(fc))]
        )
        if num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
        # one block per level stays a bare _ResBlock, so checkpoints saved before this option load unchanged
        self.blocks = nn.ModuleList(
            [_ResBlock(c, norm_num_groups) if num_res_blocks == 1
             else nn.Sequential(*[_ResBlock(c, norm_num_groups) for _ in range(num_res_blocks)]) for c in fc]
        )  # fmt: skip
        self.heads = nn.ModuleList([nn.Conv2d(c, 3 * u, 1) for c, u in zip(fc, unet_channels)])
        for h in self.heads:  # AdaLN-Zero: scale = shift = gate = 0 at init
            nn.init.zeros_(h.weight)
            nn.init.zeros_(h.bias)

    @classmethod
    def for_unet(
        cls, unet, feature_channels: Sequence[int] | None = None, norm_num_groups: int | None = None,
        num_res_blocks: int = 1,
    ):
        """A bridge whose levels match ``unet``'s encoder (``DefusionUNet.encoder_channels``)."""
        unet_ch = [unet.config.block_out_channels[0]] + list(unet.config.block_out_channels[:-1])
        fc = list(feature_channels or unet_ch)
        groups = norm_num_groups or min(8, *fc)
        from .unet import IMAGE_CHANNELS, patch_size_for

        p = patch_size_for(unet.config.in_channels, unet.config.out_channels)
        cin = IMAGE_CHANNELS if p > 1 else unet.config.in_channels
        return cls(in_channels=cin, feature_channels=fc, unet_channels=unet_ch, norm_num_groups=groups, patch_size=p,
                   modulate_skip=True, num_res_blocks=num_res_blocks)  # fmt: skip

    @classmethod
    def from_preset(cls, name: str) -> "ImageRestorationBridge":
        """The bridge that goes with ``DefusionUNet.from_preset(name)``."""
        from .unet import DefusionUNet

        return cls.for_unet(DefusionUNet.from_preset(name))

    @property
    def downsample_factor(self) -> int:
        return self.config.patch_size * 2 ** (len(self.config.feature_channels) - 1)

    def forward(self, image: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(B, C, H, W) in [-1, 1] -> one (scale, shift, gate) triple per level, level i at H / (p 2**i)."""
        if image.ndim != 4 or image.shape[1] != self.config.in_channels:
            raise ValueError(f"bridge expects (B, {self.config.in_channels}, H, W), got {tuple(image.shape)}")
        h = self.stem(self.unshuffle(image))
        out = []
        for down, block, head in zip(self.downs, self.blocks, self.heads):
            h = block(down(h))
            out.append(tuple(head(h).chunk(3, dim=1)))
        return out
