"""Degradation prompts as text codes (DFPIR's guidance): our own prompt texts per registry kind, encoded by a
frozen CLIP text encoder (open_clip ViT-B/32 loaded from a local checkpoint), or, offline, by a fallback.

The fallback gives each prompt string a fixed pseudo-random unit-scale 512-d code (seeded by the string's
CRC32). For DFPIR this is an honest stand-in: the reference maps each prompt to a channel permutation through
a random, untrained projection, so all the model can use is *which* prompt it got; distinct strings keep
distinct codes. It is reported as ``backend == "fallback"``.
"""

from __future__ import annotations

import zlib
import numpy as np
import torch

from .. import degradations as D

# Our own wording (the reference prompts are not reused), one per registry kind.
PROMPTS = {
    "blur": "an image softened by gaussian blur",
    "defocus": "an image out of focus with defocus blur",
    "haze": "a hazy image with low contrast from fog",
    "jpeg": "an image with jpeg compression blocks and ringing",
    "low_light": "a dark underexposed image taken in low light",
    "motion_blur": "an image smeared by camera shake motion blur",
    "noise": "an image corrupted by gaussian sensor noise",
    "poisson": "an image with signal dependent camera noise",
    "rain": "an image covered by rain streaks",
    "raindrop": "an image seen through raindrops on the lens",
    "resize": "a low resolution image upscaled with lost detail",
    "snow": "an image with falling snow flakes",
    "underwater": "an underwater image with a blue green color cast",
}
CLEAN_PROMPT = "a clean high quality image"


def prompt_for(spec) -> str:
    """The prompt text for a spec or name string (mixtures join their parts with 'and')."""
    if spec is None:
        return CLEAN_PROMPT
    spec = D.parse(spec) if not isinstance(spec, D.Degradation) else spec
    return " and ".join(PROMPTS[s.name] for s in spec.steps) or CLEAN_PROMPT


class DegradationPromptEncoder:
    """Encode degradation prompts to (B, 512) float codes.

    Args:
        clip_checkpoint: a local open_clip folder or ViT-B-32 checkpoint file (see ``defusion.perception.clip``);
            None uses the offline fallback.
        dim: code size of the fallback (512, CLIP ViT-B/32's text width).
    """

    def __init__(self, clip_checkpoint=None, dim: int = 512, device: str = "cpu"):
        self.dim, self.device = dim, device
        self.model = None
        self.backend = "fallback"
        if clip_checkpoint is not None:
            from .clip import load_clip

            self.model, self.backend = load_clip(clip_checkpoint, device=device)
            self.dim = self.model.text_projection.shape[1]

    @torch.no_grad()
    def encode(self, prompts) -> torch.Tensor:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.model is not None:
            import open_clip

            tokens = open_clip.tokenize(prompts, context_length=self.model.context_length)
            return self.model.encode_text(tokens.to(self.device)).float()
        codes = [np.random.default_rng(zlib.crc32(p.encode())).standard_normal(self.dim) for p in prompts]
        return torch.from_numpy(np.stack(codes)).float()
