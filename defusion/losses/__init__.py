"""Training losses: LPIPS (offline trunk loading), the tokenizer's VQGAN objective; the restorers' losses join
as their models land."""

from .lpips import LPIPSUnavailable, build_lpips, find_trunk_weights
from .vqgan import VQGANLoss, adaptive_weight, hinge_d_loss

__all__ = ["LPIPSUnavailable", "VQGANLoss", "adaptive_weight", "build_lpips", "find_trunk_weights", "hinge_d_loss"]
