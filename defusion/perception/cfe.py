"""Compact Feature Extraction (Perceive-IR); its InfoNCE loss is ``defusion.losses.info_nce_loss``.

``CompactFeatureExtractor``: four 3x3 stride-2 convs (3 -> 32 -> 64 -> 96 -> 128) with GELU, global average
pooling, a linear layer and L2 normalisation: one 128-d degradation code Z per image. The paper fixes only
Z's size; the layer choices follow the reference study.

"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CompactFeatureExtractor(nn.Module):
    def __init__(self, in_channels: int = 3, channels=(32, 64, 96, 128), dim: int = 128):
        super().__init__()
        layers, c = [], in_channels
        for w in channels:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GELU()]
            c = w
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(c, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, dim) unit vectors."""
        return F.normalize(self.proj(self.convs(x).mean(dim=(2, 3))), dim=-1)
