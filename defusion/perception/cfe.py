"""Compact Feature Extraction (Perceive-IR) and its InfoNCE degradation loss.

``CompactFeatureExtractor``: four 3x3 stride-2 convs (3 -> 32 -> 64 -> 96 -> 128) with GELU, global average
pooling, a linear layer and L2 normalisation: one 128-d degradation code Z per image. The paper fixes only
Z's size; the layer choices follow the reference study.

``info_nce_loss``: the anchor is Z of a low-quality crop, the positive Z of a second crop of the *same*
degraded image (same noise realisation), the negatives every other anchor in the batch (detached) whose task
differs (noise levels count as one task); temperature 0.1; cross-entropy per anchor, averaged.
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


def info_nce_loss(anchor: torch.Tensor, positive: torch.Tensor, task: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """``anchor``/``positive``: (B, D) unit codes; ``task``: (B,) integer task ids. Anchors with no negative in
    the batch contribute zero (their only logit is the positive)."""
    if anchor.shape != positive.shape or anchor.shape[0] != task.shape[0]:
        raise ValueError(f"shapes differ: anchor {tuple(anchor.shape)}, positive {tuple(positive.shape)}, task {tuple(task.shape)}")
    pos = (anchor * positive).sum(-1, keepdim=True) / tau
    neg = anchor @ anchor.detach().t() / tau
    neg = neg.masked_fill(task[:, None] == task[None, :], float("-inf"))  # same task (and self): not a negative
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(anchor), dtype=torch.long, device=anchor.device))
