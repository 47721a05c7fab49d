"""Diffusion in degradation space (Defusion Sec. 3.2): schedulers, targets and the inverse map.

The diffused variable is the degradation y0 = x_LQ - x_HQ (images in [-1, 1], so y0 in [-2, 2]); the restored
image is x_LQ - y0_hat. ``space="image"`` is the paper's "naive diffusion" ablation: y0 = x_HQ and the restored
image is y0_hat. Used by both the pipeline and the training script, so the two cannot disagree.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

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


# name -> (scheduler class, settings that replace the pipeline scheduler's); every one keeps the pipeline's betas,
# prediction type and zero-terminal-SNR setting
SAMPLERS = {
    "ddim": (DDIMScheduler, {"timestep_spacing": "trailing", "clip_sample": False}),
    # diffusers' classic DDIM setting (what epsilon models were usually sampled with): timesteps 751, 501, ... for
    # 4 steps, the x0 estimate clamped at each step, to [-2, 2] since y0 = x_LQ - x_HQ lies there
    "ddim-leading": (DDIMScheduler, {"timestep_spacing": "leading", "steps_offset": 1, "clip_sample": True,
                                     "clip_sample_range": 2.0}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                            "timestep_spacing": "trailing"}),
    "unipc": (UniPCMultistepScheduler, {"timestep_spacing": "trailing"}),
    "euler": (EulerDiscreteScheduler, {"timestep_spacing": "trailing"}),
}  # fmt: skip


def make_sampler(name: str, scheduler):
    """The sampler ``name`` (a key of ``SAMPLERS``) built from a pipeline's ``scheduler``: a new scheduler object
    with the same betas, prediction type and zero-SNR setting, for ``pipe.scheduler = make_sampler(...)``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    cls, settings = SAMPLERS[name]
    config = {k: v for k, v in scheduler.config.items() if not k.startswith("_")}
    return cls.from_config({**config, **settings})


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
