"""The tokenizer's training objective (Defusion Eq. 4): L_rec + L_VQ + lambda_adv * L_GAN.

* L_rec = MSE + ``perceptual_weight`` * LPIPS (lambda = 1 in the paper);
* L_VQ is the quantizer's codebook + commitment loss (straight-through), computed by the tokenizer;
* L_GAN is the hinge loss on raw PatchGAN logits, weighted by ``disc_weight`` (0.8) times the adaptive weight
  ||grad L_rec|| / ||grad L_GAN|| at the decoder's last layer (taming), and switched on at ``disc_start``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4):
    """||d rec / d last|| / (||d g / d last|| + 1e-4), clamped to [0, max_weight] and detached."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    w = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return w.clamp(0.0, max_weight).detach()


class VQGANLoss(nn.Module):
    """Generator and discriminator losses for the tokenizer.

    Args:
        lpips: an LPIPS module taking images in [-1, 1] (``defusion.losses.build_lpips``), or None to train with
            MSE only (then ``perceptual_weight`` is ignored and the logged config says so).
        perceptual_weight: lambda of L_rec.
        disc_weight: weight of the adversarial term (0.8).
        disc_start: first step at which the GAN terms are used (generator and discriminator).
    """

    def __init__(self, lpips: nn.Module | None = None, perceptual_weight: float = 1.0, disc_weight: float = 0.8,
                 disc_start: int = 10000):  # fmt: skip
        super().__init__()
        self.lpips = lpips
        self.perceptual_weight = perceptual_weight
        self.disc_weight = disc_weight
        self.disc_start = disc_start

    def gan_active(self, step: int) -> bool:
        return self.disc_weight > 0 and step >= self.disc_start

    def generator_loss(self, x, rec, vq_loss, discriminator, last_layer, step: int):
        """Returns (total loss, dict of detached parts for logging)."""
        mse = F.mse_loss(rec, x)
        rec_loss = mse
        logs = {"mse": mse.detach(), "vq": vq_loss.detach()}
        if self.lpips is not None and self.perceptual_weight > 0:
            p = self.lpips(rec.float(), x.float()).mean()
            rec_loss = rec_loss + self.perceptual_weight * p
            logs["lpips"] = p.detach()
        total = rec_loss + vq_loss
        if self.gan_active(step) and discriminator is not None:
            g_loss = -discriminator(rec).mean()
            try:
                w = adaptive_weight(rec_loss, g_loss, last_layer)
            except RuntimeError:  # no graph to the last layer (eval mode); fall back to a unit weight
                w = torch.tensor(1.0, device=x.device)
            total = total + self.disc_weight * w * g_loss
            logs.update(g_loss=g_loss.detach(), adaptive_weight=w)
        logs["rec"] = rec_loss.detach()
        return total, logs

    def discriminator_loss(self, x, rec, discriminator, step: int):
        """Hinge loss on raw logits; zero (with no graph) before ``disc_start``."""
        if not self.gan_active(step):
            return None, {}
        d_loss = hinge_d_loss(discriminator(x.detach()), discriminator(rec.detach()))
        return d_loss, {"d_loss": d_loss.detach()}
