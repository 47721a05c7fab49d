"""RestorerPipeline: one pipeline for every regression restorer (Restormer, PromptIR, DFPIR, ...).

    >>> pipe = RestorerPipeline.from_preset("dfpir", "tiny")          # untrained, or .from_pretrained(folder)
    >>> out = pipe(image, degradation="rain")                          # DFPIR needs the degradation (or "auto")
    >>> out.images[0]

Images go in as PIL / numpy / torch (single or list), are reflect-padded to the model's multiple, run whole or in
overlapping tiles (``defusion.tiling``), cropped back and returned as PIL / np / pt. Models that take a
degradation prompt (``needs_prompt``) get its code from ``pipe.prompt_encoder`` (CLIP when a local checkpoint is
given, else the offline fallback; see ``defusion.perception.prompts``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ModelMixin
from diffusers.utils import BaseOutput

from .. import degradations as D
from ..models import DFPIR, PromptIR, Restormer
from ..perception import DegradationIdentifier, DegradationPromptEncoder, prompt_for
from ..tiling import tiled_apply
from .image_io import as_image_list, check_output_type, group_by_shape, pad_to_multiple, postprocess, to_model_batch

RESTORERS = {"restormer": Restormer, "promptir": PromptIR, "dfpir": DFPIR}


@dataclass
class RestorerPipelineOutput(BaseOutput):
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    degradations: list[str] | None = None  # the degradation each image was restored for ("none" if not used)


class RestorerPipeline(DiffusionPipeline):
    """Components: ``restorer`` (a regression model with ``downsample_factor``) and an optional
    ``identifier`` (for ``degradation="auto"``)."""

    model_cpu_offload_seq = "identifier->restorer"
    _optional_components = ["identifier"]

    def __init__(self, restorer: ModelMixin, identifier: DegradationIdentifier | None = None):
        super().__init__()
        self.register_modules(restorer=restorer, identifier=identifier)
        self.prompt_encoder = DegradationPromptEncoder(dim=getattr(restorer.config, "prompt_dim", 512))

    @classmethod
    def from_preset(cls, model: str, preset: str = "tiny", **overrides) -> "RestorerPipeline":
        if model not in RESTORERS:
            raise ValueError(f"unknown restorer {model!r}; choose from {sorted(RESTORERS)}")
        return cls(restorer=RESTORERS[model].from_preset(preset, **overrides))

    @property
    def needs_prompt(self) -> bool:
        return bool(getattr(self.restorer, "needs_prompt", False))

    def _degradation_label(self, degradation, image) -> str | None:
        if degradation is None:
            return None
        if isinstance(degradation, str) and degradation.strip().lower() == "auto":
            if self.identifier is None:
                raise ValueError("degradation='auto' needs a degradation identifier; this pipeline has none")
            found = self.identifier.identify(image)
            return "+".join(k for k, _, _ in found) or None
        spec = degradation if isinstance(degradation, D.Degradation) else D.parse(degradation)
        return "+".join(s.name for s in spec.steps)

    @torch.no_grad()
    def __call__(self, image, degradation=None, output_type: str = "pil", return_dict: bool = True,
                 tile_size: int | None = None, tile_overlap: int = 32):  # fmt: skip
        """Restore ``image``. ``degradation``: names (``"rain+noise"``), a spec, ``"auto"``, None, or a list with
        one per image; models without prompts ignore it. ``tile_size``: overlapping tiles above this size."""
        check_output_type(output_type)
        images = as_image_list(image)
        degs = list(degradation) if isinstance(degradation, list) else [degradation] * len(images)
        if len(degs) != len(images):
            raise ValueError(f"got {len(degs)} degradations for {len(images)} images")
        labels = [self._degradation_label(d, im) for d, im in zip(degs, images)]
        if self.needs_prompt and any(lab is None for lab in labels):
            raise ValueError(f"{type(self.restorer).__name__} needs degradation= (names like 'rain', or 'auto')")
        m = self.restorer.downsample_factor
        if tile_size is not None and tile_size % m:
            raise ValueError(f"tile_size must be a multiple of {m}, got {tile_size}")
        device, dtype = self._execution_device, self.restorer.dtype
        results: dict[int, torch.Tensor] = {}
        for shape, idx in group_by_shape(images).items():
            x = to_model_batch([images[i] for i in idx], device, dtype)
            h, w = x.shape[-2:]
            x = pad_to_multiple(x, m)
            kwargs = {}
            if self.needs_prompt:
                code = self.prompt_encoder.encode([prompt_for(labels[i]) for i in idx]).to(device, dtype)
                kwargs["prompt_code"] = code
            out = tiled_apply(lambda t: self.restorer(t[0], **kwargs), [x], tile_size, tile_overlap, multiple=m)
            for j, i in enumerate(idx):
                results[i] = out[j, :, :h, :w].clamp(-1, 1)
        same = len({images[i].shape for i in results}) == 1
        outputs = torch.stack([results[i] for i in range(len(images))]) if same else [results[i] for i in range(len(images))]
        images_out = postprocess(outputs, output_type)
        labels = [lab or "none" for lab in labels]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images_out, labels)
        return RestorerPipelineOutput(images=images_out, degradations=labels)
