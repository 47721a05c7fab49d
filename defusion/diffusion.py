"""Diffusion in degradation space (Defusion Sec. 3.2): schedulers, targets and the inverse map.

The diffused variable is the degradation y0 = x_LQ - x_HQ (images in [-1, 1], so y0 in [-2, 2]); the restored
image is x_LQ - y0_hat. ``space="image"`` is the paper's "naive diffusion" ablation: y0 = x_HQ and the restored
image is y0_hat. Used by both the pipeline and the training script, so the two cannot disagree.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

PREDICTION_TYPES = ("sample", "v_prediction", "epsilon")
SPACES = ("degradation", "image")


def make_scheduler(prediction_type: str = "sample", num_train_timesteps: int = 1000, beta_schedule: str = "linear"):
    """DDIM with trailing spacing and no sample clipping (y0 lies in [-2, 2]).

    ``sample`` and ``v_prediction`` use zero-terminal-SNR betas (sampling starts from pure noise, as trained);
    ``epsilon`` (the paper's objective) cannot, because x0 = (x - sqrt(1 - a) eps) / sqrt(a) divides by zero at
    zero SNR, so it keeps the plain schedule.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        timestep_spacing="trailing",
        clip_sample=False,
        prediction_type=prediction_type,
        rescale_betas_zero_snr=prediction_type != "epsilon",
        set_alpha_to_one=True,
    )


def check_space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"diffusion space must be one of {SPACES}, got {space!r}")
    return space


def clean_signal(x_lq: torch.Tensor, x_hq: torch.Tensor, space: str = "degradation") -> torch.Tensor:
    """y0: the degradation x_LQ - x_HQ (or x_HQ itself in image space)."""
    return x_lq - x_hq if check_space(space) == "degradation" else x_hq


def restored_from(x_lq: torch.Tensor, y0: torch.Tensor, space: str = "degradation") -> torch.Tensor:
    """The restored image from a (predicted) y0."""
    return x_lq - y0 if check_space(space) == "degradation" else y0


def training_target(scheduler, y0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    pt = scheduler.config.prediction_type
    if pt == "sample":
        return y0
    if pt == "v_prediction":
        return scheduler.get_velocity(y0, noise, t)
    return noise


def predicted_y0(scheduler, y_t: torch.Tensor, pred: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 estimate from the model output at timestep(s) ``t`` (for auxiliary losses and validation)."""
    ab = scheduler.alphas_cumprod.to(y_t.device)[t].float().view(-1, 1, 1, 1)
    pt = scheduler.config.prediction_type
    if pt == "sample":
        return pred
    if pt == "v_prediction":
        return ab.sqrt() * y_t - (1 - ab).sqrt() * pred
    return (y_t - (1 - ab).sqrt() * pred) / ab.sqrt().clamp_min(1e-4)
