"""Training losses: LPIPS (offline trunk loading), the tokenizer's VQGAN objective, Perceive-IR's CLIP-aware and
difficulty-adaptive perceptual losses, ClearAIR's ICRM consistency loss, the per-sample restoration losses (MSE, PSNR)."""

from .clearair import ICRM_WEIGHT, icrm_loss
from .lpips import LPIPSUnavailable, build_lpips, find_trunk_weights
from .perceive_ir import DifficultyAdaptivePerceptualLoss, clip_aware_loss, difficulty_weights, info_nce_loss, psnr_per_image
from .restoration import LOSSES, per_sample_mse, restoration_loss
from .vqgan import VQGANLoss, adaptive_weight, hinge_d_loss

__all__ = [
    "DifficultyAdaptivePerceptualLoss",
    "ICRM_WEIGHT",
    "LOSSES",
    "LPIPSUnavailable",
    "VQGANLoss",
    "adaptive_weight",
    "build_lpips",
    "clip_aware_loss",
    "difficulty_weights",
    "find_trunk_weights",
    "hinge_d_loss",
    "icrm_loss",
    "info_nce_loss",
    "per_sample_mse",
    "psnr_per_image",
    "restoration_loss",
]
