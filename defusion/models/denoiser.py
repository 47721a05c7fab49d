"""DefusionDenoiser: the one conditioned forward of Defusion (U-Net + Image Restoration Bridge + adapter).

    >>> denoiser = DefusionDenoiser(unet, bridge, adapter)
    >>> pred = denoiser(y_t, t, x_lq, tokens)                        # tokens: (B, N, token_dim) from the tokenizer
    >>> pred = denoiser(y_t, t, x_lq, tokens, instruction_scale=0)   # this call only: instruction branch off

The low-quality image goes through the bridge to AdaLN-Zero modulations of the U-Net encoder, the degradation
tokens through the adapter's projection to the decoupled cross-attention, the optional text embeddings to the
U-Net's own cross-attention. The pipeline, the training step and the benchmarks all call this module; it owns
no weights of its own (they stay in the three saved components) and keeps no per-call setting.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .adapter import VisualInstructionAdapter
from .bridge import ImageRestorationBridge
from .unet import DefusionUNet


class DefusionDenoiser(nn.Module):
    """``unet``, ``bridge`` and ``adapter`` as one module (also the unit that training wraps for DDP)."""

    def __init__(self, unet: DefusionUNet, bridge: ImageRestorationBridge, adapter: VisualInstructionAdapter):
        super().__init__()
        self.unet, self.bridge, self.adapter = unet, bridge, adapter
        adapter.attach(unet)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        lq: torch.Tensor,
        tokens: torch.Tensor | None,
        text: torch.Tensor | None = None,
        instruction_scale: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
        sample: the noisy state y_t (B, 3, H, W).
        timestep: a scalar or a (B,) tensor.
        lq: the low-quality image (B, 3, H, W) in [-1, 1].
        tokens: degradation tokens (B, N, token_dim), or None for no instruction (one zero token, what training
            shows for a dropped instruction; N zero tokens attend the same).
        text: text embeddings (B, L, cross_attention_dim); default one zero token.
        instruction_scale: scale of the instruction branch for this call (a number, or one per sample);
            default: the adapter's ``config.scale``.
        Returns the U-Net's prediction, shaped like ``sample``.
        """
        b = sample.shape[0]
        if lq.shape[0] != b or lq.shape[-2:] != sample.shape[-2:]:
            raise ValueError(f"lq {tuple(lq.shape)} does not match sample {tuple(sample.shape)}")
        if text is None:
            text = sample.new_zeros(b, 1, self.unet.config.cross_attention_dim)
        scale = self.adapter.config.scale if instruction_scale is None else instruction_scale
        check_scale(scale, b)
        if tokens is None:
            tokens = sample.new_zeros(b, 1, self.adapter.config.token_dim)
        cond = (text, [self.adapter(tokens)], scale)
        feats = self.bridge(lq)
        return self.unet(sample, timestep, cond, bridge_features=feats, modulate_skip=self.bridge.config.modulate_skip).sample


def check_scale(scale, batch: int) -> None:
    """A finite number, or a tensor with one value or one per sample (not read back: no device sync)."""
    if isinstance(scale, torch.Tensor):
        if scale.numel() not in (1, batch):
            raise ValueError(f"instruction_scale must have 1 or {batch} values, got shape {tuple(scale.shape)}")
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"instruction_scale must be a finite number, got {scale!r}")
