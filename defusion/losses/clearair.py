"""ClearAIR's inter-consistency regularisation (ICRM): L = L1 + 0.25 * 0.05 * MSE(weak, strong).

weak: a random crop of 70 % of each side of the *restored* output, resized back bilinearly; strong: weak with
brightness, contrast and saturation factors each drawn from [0.6, 1.4], then a 5x5 Gaussian blur (sigma 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

ICRM_WEIGHT = 0.25 * 0.05


def icrm_loss(restored: torch.Tensor, generator: torch.Generator | None = None, crop: float = 0.7) -> torch.Tensor:
    """``restored``: (B, 3, H, W) in [-1, 1]; returns MSE(weak, strong) (not yet weighted)."""
    b, _, h, w = restored.shape
    ch, cw = max(1, int(h * crop)), max(1, int(w * crop))
    x = (restored + 1) / 2
    weak, strong = [], []
    for i in range(b):
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        wk = F.interpolate(x[i : i + 1, :, top : top + ch, left : left + cw], size=(h, w), mode="bilinear", align_corners=False)
        f = 0.6 + 0.8 * torch.rand(3, generator=generator)
        st = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(wk, float(f[0])), float(f[1])), float(f[2]))
        weak.append(wk)
        strong.append(TF.gaussian_blur(st, kernel_size=[5, 5], sigma=[1.0, 1.0]))
    return F.mse_loss(torch.cat(weak), torch.cat(strong))
