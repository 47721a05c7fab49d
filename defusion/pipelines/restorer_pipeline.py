"""RestorerPipeline: one pipeline for every regression restorer (Restormer, PromptIR, DFPIR, Perceive-IR, ClearAIR).

    >>> pipe = RestorerPipeline.from_preset("dfpir", "tiny")          # untrained, or .from_pretrained(folder)
    >>> out = pipe(image, degradation="rain")                          # DFPIR needs the degradation (or "auto")
    >>> out.images[0]

Images go in as PIL / numpy / torch (single or list), are reflect-padded to the model's multiple, run whole or in
overlapping tiles (``defusion.tiling``), cropped back and returned as PIL / np / pt. Models that take a
degradation prompt (``needs_prompt``) get its code from ``pipe.prompt_encoder`` (CLIP when a local checkpoint is
given, else the offline fallback; see ``defusion.perception.prompts``). Models with ``conditions`` (Perceive-IR,
ClearAIR) get them from ``defusion.perception.Conditioner`` over the pipeline's frozen perception components:
``semantic_encoder`` (a transformers ``Dinov2Model``), ``identifier``, and ``region_model`` + ``region_processor``
(a transformers SAM; without them, SLIC regions). Global conditions are computed once on the whole image;
region masks are tiled with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import ModelMixin
from diffusers.utils import BaseOutput

from .. import degradations as D
from ..models import DFPIR, ClearAIR, PerceiveIR, PromptIR, Restormer
from ..perception import Conditioner, DegradationIdentifier, DegradationPromptEncoder, RegionMasks, SemanticEncoder, prompt_for
from ..perception.semantic import random_dinov2
from ..tiling import check_tiling, context_tile, crop_context, pad_with_context, padded_size, tile_count, tiled_apply
from .loading import PackagedPipeline
from .image_io import as_image_list, check_output_type, group_by_shape, postprocess, to_model_batch

RESTORERS = {"restormer": Restormer, "promptir": PromptIR, "dfpir": DFPIR, "perceive_ir": PerceiveIR, "clearair": ClearAIR}


@dataclass
class RestorerPipelineOutput(BaseOutput):
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    degradations: list[str] | None = None  # the degradation each image was restored for ("none" if not used)


class RestorerPipeline(PackagedPipeline):
    """Components: ``restorer`` (a regression model with ``downsample_factor``); optional ``identifier`` (for
    ``degradation="auto"`` and ClearAIR's quality / degradation conditions), ``semantic_encoder`` (DINOv2),
    ``region_model`` and ``region_processor`` (SAM)."""

    model_cpu_offload_seq = "identifier->semantic_encoder->restorer"
    _optional_components = ["identifier", "semantic_encoder", "region_model", "region_processor"]
    # pixels of reflected context padded around every image (defusion.tiling.pad_with_context): Restormer-based
    # models reach further (global channel attention); dfpir-small's band on a flat hazy image drops from 15 to 1
    # grey level with 32 (benchmarks/restore_profile.py --borders)
    context_border = 32
    # set_precision("auto") stays float32: dfpir-small's PSNR moves by -4.4 to +2.5 dB in bfloat16
    # (benchmarks/results/precision_cpu.md; its channel attention computed in float32 did not help, the cause is
    # not known); "bf16" must be asked for
    auto_bf16 = False

    def __init__(self, restorer: ModelMixin, identifier: DegradationIdentifier | None = None, semantic_encoder=None,
                 region_model=None, region_processor=None):  # fmt: skip
        super().__init__()
        self.register_modules(restorer=restorer, identifier=identifier, semantic_encoder=semantic_encoder,
                              region_model=region_model, region_processor=region_processor)  # fmt: skip
        self.prompt_encoder = DegradationPromptEncoder(dim=getattr(restorer.config, "prompt_dim", 512))
        self.region_cache_dir = None

    @classmethod
    def from_preset(cls, model: str, preset: str = "tiny", **overrides) -> "RestorerPipeline":
        """An untrained pipeline. Perceive-IR and ClearAIR get the offline perception fallbacks: a tiny random
        DINOv2 (reported by its config) and, for ClearAIR, a ``tiny``/``small`` identifier matching the preset."""
        if model not in RESTORERS:
            raise ValueError(f"unknown restorer {model!r}; choose from {sorted(RESTORERS)}")
        restorer = RESTORERS[model].from_preset(preset, **overrides)
        wanted = getattr(restorer, "conditions", ())
        semantic = random_dinov2() if {"semantic", "content"} & set(wanted) else None
        identifier = None
        if {"quality", "degradation"} & set(wanted):
            identifier = DegradationIdentifier.from_preset("tiny" if preset == "tiny" else "small")
        return cls(restorer=restorer, identifier=identifier, semantic_encoder=semantic)

    def conditioner(self) -> Conditioner:
        """The perception modules of this pipeline, wrapped for ``Conditioner``."""
        semantic = SemanticEncoder(self.semantic_encoder) if self.semantic_encoder is not None else None
        if self.region_model is not None:
            regions = RegionMasks(self.region_model, self.region_processor, cache_dir=self.region_cache_dir)
        else:
            regions = RegionMasks(cache_dir=self.region_cache_dir)
        return Conditioner(semantic_encoder=semantic, identifier=self.identifier, region_masks=regions)

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

    def num_evaluations(self, height: int, width: int, tile_size: int | None = None, tile_overlap: int = 32) -> int:
        """How many restorer evaluations (tiles) a call runs on one (height, width) image: what its progress bar
        counts."""
        m = self.restorer.downsample_factor
        check_tiling(tile_size, tile_overlap, m)
        tile = context_tile(tile_size, self.context_border, m)
        return tile_count(*padded_size(height, width, m, self.context_border), tile, tile_overlap, m)

    @torch.no_grad()
    def __call__(self, image, degradation=None, output_type: str = "pil", return_dict: bool = True,
                 tile_size: int | None = None, tile_overlap: int = 32):  # fmt: skip
        """Restore ``image``. ``degradation``: names (``"rain+noise"``), a spec, ``"auto"``, None, or a list with
        one per image; models without prompts ignore it. Where ``"auto"`` detects nothing, a model that needs a
        prompt returns the image unchanged (reported as ``"none"``). ``tile_size``: overlapping tiles above this
        size."""
        check_output_type(output_type)
        images = as_image_list(image)
        degs = list(degradation) if isinstance(degradation, list) else [degradation] * len(images)
        if len(degs) != len(images):
            raise ValueError(f"got {len(degs)} degradations for {len(images)} images")
        labels = [self._degradation_label(d, im) for d, im in zip(degs, images)]
        if self.needs_prompt and any(lab is None and d is None for lab, d in zip(labels, degs)):
            raise ValueError(f"{type(self.restorer).__name__} needs degradation= (names like 'rain', or 'auto')")
        # a prompt model has nothing to remove where "auto" detected nothing: those images come back as they are
        unchanged = {i for i, lab in enumerate(labels) if lab is None and self.needs_prompt}
        m = self.restorer.downsample_factor
        check_tiling(tile_size, tile_overlap, m)
        device, dtype = self._execution_device, self.restorer.dtype
        conditioner = self.conditioner() if getattr(self.restorer, "conditions", ()) else None
        spatial = tuple(getattr(self.restorer, "spatial_conditions", ()))
        results: dict[int, torch.Tensor] = {}
        for i in unchanged:
            results[i] = to_model_batch([images[i]], device, dtype)[0]
        for shape, idx in group_by_shape(images).items():
            idx = [i for i in idx if i not in unchanged]
            if not idx:
                continue
            x = to_model_batch([images[i] for i in idx], device, dtype)
            h, w = x.shape[-2:]
            x, offset = pad_with_context(x, m, self.context_border)
            kwargs = {}
            if self.needs_prompt:
                code = self.prompt_encoder.encode([prompt_for(labels[i]) for i in idx]).to(device, dtype)
                kwargs["prompt_code"] = code
            if conditioner is not None:
                kwargs.update({k: v.to(dtype) if torch.is_tensor(v) else [f.to(dtype) for f in v]
                               for k, v in conditioner(self.restorer, x).items()})  # fmt: skip
            tiled = [kwargs.pop(k) for k in spatial]

            tile = context_tile(tile_size, self.context_border, m)
            with self.progress_bar(total=tile_count(*x.shape[-2:], tile, tile_overlap, m)) as bar:

                def run(tiles):
                    bar.update(1)
                    with self.autocast(device):  # set_precision
                        out = self.restorer(tiles[0], **kwargs, **dict(zip(spatial, tiles[1:])))
                    return out.to(tiles[0].dtype)

                out = crop_context(tiled_apply(run, [x, *tiled], tile, tile_overlap, multiple=m), offset, (h, w))
            for j, i in enumerate(idx):
                results[i] = out[j].clamp(-1, 1)
        same = len({images[i].shape for i in results}) == 1
        outputs = torch.stack([results[i] for i in range(len(images))]) if same else [results[i] for i in range(len(images))]
        images_out = postprocess(outputs, output_type)
        labels = [lab or "none" for lab in labels]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images_out, labels)
        return RestorerPipelineOutput(images=images_out, degradations=labels)
