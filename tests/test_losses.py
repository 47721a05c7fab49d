"""The per-sample restoration losses used by train_defusion.py."""

import math

import pytest
import torch

from defusion.losses import per_sample_mse, restoration_loss


def test_mse_is_the_batch_mse():
    pred, target = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    assert torch.allclose(restoration_loss(pred, target, "mse"), torch.nn.functional.mse_loss(pred, target))
    assert torch.allclose(per_sample_mse(pred, target), (pred - target).pow(2).mean(dim=(1, 2, 3)))


def test_psnr_loss_is_the_mean_log_error():
    target = torch.zeros(2, 3, 4, 4)
    pred = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.01)])  # MSE 1e-2 and 1e-4
    loss = restoration_loss(pred, target, "psnr", eps=1e-6)
    expected = (10 * math.log10(1e-2 + 1e-6) + 10 * math.log10(1e-4 + 1e-6)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_psnr_loss_weighs_samples_by_relative_error():
    """Shrinking every sample's error by the same factor: under MSE the sample with 10x the error gains 100x as
    much, under the PSNR loss both gain the same."""
    target = torch.zeros(2, 1, 4, 4)
    base = torch.stack([torch.full((1, 4, 4), 1.0), torch.full((1, 4, 4), 0.1)])
    for kind, ratio in (("mse", 100.0), ("psnr", 1.0)):
        scale = torch.ones(2, 1, 1, 1, requires_grad=True)
        restoration_loss(scale * base, target, kind, eps=1e-9).backward()
        assert (scale.grad[0] / scale.grad[1]).item() == pytest.approx(ratio, rel=1e-4)


def test_bad_arguments():
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="loss must be one of"):
        restoration_loss(x, x, "l3")
    with pytest.raises(ValueError, match="eps must be > 0"):
        restoration_loss(x, x, "psnr", eps=0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        restoration_loss(x, torch.zeros(1, 3, 4, 5))
