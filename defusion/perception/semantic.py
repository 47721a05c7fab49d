"""SemanticEncoder: Perceive-IR's semantic guidance, the CLS features of DINOv2 layers 1 / 4 / 8 / 12.

A frozen ``transformers.Dinov2Model`` (``facebook/dinov2-base`` from a local folder or the hub cache) looks at
the low-quality image resized bicubically to 224 with ImageNet mean and std; the CLS token of
``hidden_states[l]`` for each ``l`` in ``layers`` is returned (768-d each for the base model). Offline without
weights, ``SemanticEncoder.fallback()`` builds a tiny random-weight DINOv2 with the same interface (12 layers,
so the same layer indices) and says so in ``backend``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_LAYERS = (1, 4, 8, 12)
FALLBACK_DINO_CONFIG = dict(hidden_size=32, num_hidden_layers=12, num_attention_heads=2, intermediate_size=64,
                            image_size=224, patch_size=14)  # fmt: skip


def random_dinov2(seed: int = 0, **overrides):
    from transformers import Dinov2Config, Dinov2Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Dinov2Model(Dinov2Config(**{**FALLBACK_DINO_CONFIG, **overrides}))


class SemanticEncoder(nn.Module):
    """Frozen DINOv2 -> list of (B, hidden) CLS features, one per entry of ``layers``."""

    def __init__(self, model, layers=DINO_LAYERS, resolution: int = 224, backend: str = ""):
        super().__init__()
        n = model.config.num_hidden_layers
        if any(not 0 <= l <= n for l in layers):
            raise ValueError(f"layers {tuple(layers)} out of range for a {n}-layer DINOv2")
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.layers, self.resolution, self.backend = tuple(layers), resolution, backend

    @classmethod
    def from_pretrained(cls, path_or_id: str, **kwargs) -> "SemanticEncoder":
        from transformers import Dinov2Model

        return cls(Dinov2Model.from_pretrained(path_or_id), backend=f"DINOv2 ({path_or_id})", **kwargs)

    @classmethod
    def fallback(cls, seed: int = 0, **kwargs) -> "SemanticEncoder":
        logger.warning("no DINOv2 weights given: using a tiny random-weight DINOv2 (not pretrained)")
        return cls(random_dinov2(seed), backend="random tiny DINOv2 (fallback, not pretrained)", **kwargs)

    @classmethod
    def load(cls, path_or_id=None, **kwargs) -> "SemanticEncoder":
        return cls.fallback(**kwargs) if path_or_id is None else cls.from_pretrained(path_or_id, **kwargs)

    @property
    def feature_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # always frozen
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [-1, 1] -> [CLS of hidden_states[l] for l in layers], each (B, hidden), float32."""
        return self.cls_features(x, self.layers)

    @torch.no_grad()
    def cls_features(self, x: torch.Tensor, layers) -> list[torch.Tensor]:
        """CLS tokens of ``hidden_states[l]`` for each ``l`` in ``layers`` (0 = embeddings)."""
        n = self.model.config.num_hidden_layers
        if any(not 0 <= l <= n for l in layers):
            raise ValueError(f"layers {tuple(layers)} out of range for a {n}-layer DINOv2")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
        p = next(self.model.parameters())
        x = ((x.float() + 1) / 2).clamp(0, 1)
        x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bicubic", align_corners=False, antialias=True)
        x = (x - torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]) / torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
        hidden = self.model(pixel_values=x.to(p.device, p.dtype), output_hidden_states=True).hidden_states
        return [hidden[l][:, 0].float() for l in layers]
