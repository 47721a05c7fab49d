"""Per-sample restoration losses for the Defusion objective.

Plain MSE over a batch lets the samples with the largest residuals (heavy noise, dark images) set the gradient: a
sigma-50 sample's squared error is about 3x a sigma-25 one's and 10x a JPEG q10 one's, so small degradations are
barely trained. The PSNR loss averages log MSE per sample instead, which is what a benchmark's mean PSNR rewards:
each sample's gradient is its MSE gradient divided by its own error (plus ``eps``, which caps the weight of samples
that are already nearly exact, such as non-matching instructions whose target is "change nothing").
"""

from __future__ import annotations

import torch

LOSSES = ("mse", "psnr")


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each sample in the batch (shape ``(B,)``), in float32."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def restoration_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse", eps: float = 1e-3) -> torch.Tensor:
    """``mse``: the batch MSE. ``psnr``: the batch mean of ``10 log10(MSE_i + eps)`` (the negative PSNR of each sample
    up to a constant, in dB)."""
    err = per_sample_mse(pred, target)
    if kind == "mse":
        return err.mean()
    if kind == "psnr":
        if eps <= 0:
            raise ValueError(f"eps must be > 0 for the psnr loss, got {eps}")
        return 10.0 * torch.log10(err + eps).mean()
    raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
