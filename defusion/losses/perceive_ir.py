"""Perceive-IR's restoration losses besides L1 (total L = L1 + 0.1 L_cl + 0.05 L_clip + 0.1 L_dpl).

* L_cl (``info_nce_loss``): the anchor is Z (``defusion.perception.CompactFeatureExtractor``) of a low-quality
  crop, the positive Z of a second crop of the *same* degraded image (same noise realisation), the negatives every
  other anchor in the batch (detached) whose task differs (noise levels count as one task); temperature 0.1;
  cross-entropy per anchor, averaged.
* L_clip (``clip_aware_loss``): the restored image, clamped, through the frozen CLIP of a trained
  ``QualityPerceiver``; 1 - softmax(cosine)[excellent] with temperature 1 (paper Eq. 9); gradients flow through
  the frozen CLIP to the image.
* L_dpl (``DifficultyAdaptivePerceptualLoss``): contrastive-regularisation style ratio on VGG16 features
  (``features`` indices 3, 7, 11, 15; weights 1/12, 1/6, 1/3, 1; ImageNet normalisation; mean L1):
  M(restored, GT) / (2 M(restored, LQ) + sum_q w_q mask_q M(restored, proxy_q)), denominator at least 1e-6,
  summed over levels and averaged over the batch. The LQ is the easy negative (weight 2). Proxies are other
  restorers' outputs ("hard" negatives, pluggable); each proxy patch weighs 1.25 when its PSNR is at most the
  model's current probe PSNR ("hard") and 0.75 otherwise ("very hard"). VGG16 loads from a local torchvision
  state dict; without one the loss is disabled with a logged warning, never run on random weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..perception.semantic import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

VGG_LAYERS = (3, 7, 11, 15)
VGG_WEIGHTS = (1 / 12, 1 / 6, 1 / 3, 1.0)
HARD, VERY_HARD, EASY = 1.25, 0.75, 2.0


def clip_aware_loss(perceiver, restored: torch.Tensor, excellent: str = "excellent") -> torch.Tensor:
    """1 - P(excellent) under the perceiver's prompts with temperature 1, averaged over the batch."""
    probs = perceiver.cosine(restored.clamp(-1, 1)).softmax(dim=-1)
    return (1 - probs[:, perceiver.classes.index(excellent)]).mean()


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR of images in [-1, 1] on the [0, 1] scale, per batch item."""
    mse = ((a.float() - b.float()) / 2).pow(2).flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp(min=1e-10))


def difficulty_weights(proxy: torch.Tensor, gt: torch.Tensor, probe_psnr: float) -> torch.Tensor:
    """Per-patch proxy weight: 1.25 if the proxy's PSNR <= the model's probe PSNR ("hard"), else 0.75."""
    p = psnr_per_image(proxy, gt)
    return torch.where(p <= probe_psnr, torch.full_like(p, HARD), torch.full_like(p, VERY_HARD))


class DifficultyAdaptivePerceptualLoss(nn.Module):
    def __init__(self, vgg_features: nn.Module):
        super().__init__()
        self.slices = nn.ModuleList()
        start = 0
        for end in VGG_LAYERS:
            self.slices.append(nn.Sequential(*[vgg_features[i] for i in range(start, end + 1)]))
            start = end + 1
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[:, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[:, None, None], persistent=False)

    @classmethod
    def from_path(cls, vgg16_path=None) -> "DifficultyAdaptivePerceptualLoss | None":
        """VGG16 ``features`` from a local torchvision state dict (e.g. ``vgg16-397923af.pth``; only its
        ``features.*`` entries are needed); None (with a warning) when no file is given or found."""
        from torchvision.models import vgg16

        if vgg16_path is None or not Path(vgg16_path).is_file():
            logger.warning("no VGG16 weights (%s): the difficulty-adaptive perceptual loss is disabled", vgg16_path)
            return None
        net = vgg16(weights=None)
        state = torch.load(str(vgg16_path), map_location="cpu", weights_only=True)
        features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        if not features:
            raise ValueError(f"{vgg16_path} holds no VGG16 'features.*' weights")
        net.features.load_state_dict(features)
        return cls(net.features)

    def train(self, mode: bool = True):
        return super().train(False)  # frozen

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (((x.float() + 1) / 2).clamp(0, 1) - self.mean) / self.std
        out = []
        for s in self.slices:
            h = s(h)
            out.append(h)
        return out

    def forward(self, restored, gt, lq, proxies=(), proxy_weights=()) -> torch.Tensor:
        """``proxies``: (B, 3, H, W) tensors; ``proxy_weights``: (B,) per-patch weights (0 masks a patch out)."""
        fr, fg, fl = self.features(restored), self.features(gt), self.features(lq)
        fp = [self.features(p) for p in proxies]
        total = 0.0
        for i, xi in enumerate(VGG_WEIGHTS):

            def m(a, b):
                return (a - b.detach()).abs().flatten(1).mean(1)

            den = EASY * m(fr[i], fl[i])
            for f, w in zip(fp, proxy_weights):
                den = den + w.to(den) * m(fr[i], f[i])
            total = total + xi * m(fr[i], fg[i]) / den.clamp(min=1e-6)
        return total.mean()


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
