"""DefusionPipeline: visual-instructed degradation diffusion (Defusion, CVPR 2025) as a diffusers pipeline.

    >>> pipe = DefusionPipeline.from_pretrained("path/to/defusion-small")      # or from_preset("tiny")
    >>> out = pipe(image, instruction="rain+noise", num_inference_steps=4,
    ...            generator=torch.Generator().manual_seed(0))
    >>> out.images[0]

The pipeline orchestrates; the models hold the logic: the tokenizer turns the visual instruction into residual
degradation tokens, the adapter projects them for the U-Net's decoupled cross-attention, the bridge turns the
low-quality image into AdaLN-Zero modulations, the U-Net predicts, the DDIM scheduler steps, and
``defusion.diffusion`` maps the degradation estimate back to the restored image.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from diffusers import DDIMScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from diffusers.utils import logging

from .. import degradations as D
from ..diffusion import check_space, make_scheduler, restored_from
from ..ensemble import ensemble_passes, ensemble_plan, ensemble_unview, ensemble_view, view_size
from ..instructions import GROUND_KINDS, VisualInstruction
from ..models import DefusionDenoiser, DefusionUNet, DegradationTokenizer, ImageRestorationBridge, VisualInstructionAdapter
from ..models.denoiser import check_scale
from ..noise_level import NOISE_ESTIMATORS, estimate_noise_sigma
from ..perception import DegradationIdentifier
from ..tiling import (
    check_tiling, context_tile, crop_context, pad_with_context, padded_size, tile_count, tile_layout, tiled_apply,
)
from .image_io import as_image_list, check_output_type, group_by_shape, postprocess, to_model_batch
from .loading import PackagedPipeline

logger = logging.get_logger(__name__)
# images more than REGION_TILES tiles long restore in overlapping regions of that many tiles (memory bounded by a
# region, not the image); regions overlap by REGION_OVERLAP pixels (at most a tile), blended like tiles
REGION_TILES, REGION_OVERLAP = 4, 128
TOKEN_CACHE = 64  # instructions whose tokens a pipeline keeps
LONG_CALL = 64  # U-Net evaluations per image (steps x views) above which a call warns that it will take long


@dataclass
class DefusionPipelineOutput(BaseOutput):
    """``images``: restored images (PIL list, np BHWC or pt BCHW in [0, 1]); ``instructions``: what the model was
    told for each image (a degradation label such as ``rain+noise(sigma=25)``, or ``"none"``); ``detected``: with
    ``instruction="auto"``, what the identifier found in each image."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    instructions: list[str] | None = None
    detected: list[list[tuple[str, float, float]]] | None = None  # instruction="auto": (kind, probability, severity)


class DefusionPipeline(PackagedPipeline):
    """Components: ``unet`` (DefusionUNet), ``bridge`` (ImageRestorationBridge), ``adapter``
    (VisualInstructionAdapter), ``degradation_tokenizer`` (DegradationTokenizer: instruction images to tokens),
    ``scheduler`` (DDIMScheduler, trailing, no clipping); optional ``identifier`` (blind mode) and the text pair
    ``text_encoder`` / ``text_tokenizer`` (the text-instruction ablation). ``denoiser`` is the one conditioned
    forward over unet + bridge + adapter (``DefusionDenoiser``). Config: ``diffusion_space`` ("degradation", or
    "image" for the naive-diffusion ablation),
    ``ground`` ("pool", or "blank" / "simple" for the grounding ablations), and for blind mode
    ``noise_estimator`` ("pca" or "wavelet", ``defusion.noise_level.estimate_noise_sigma``) with
    ``noise_scale`` (the instructed sigma is ``noise_scale`` x the estimate). ``default_steps`` and
    ``default_self_ensemble`` are what a call without ``num_inference_steps`` / ``self_ensemble`` runs (4 DDIM
    steps and one pass, as in the paper, unless a saved model says otherwise: its model card says why)."""

    model_cpu_offload_seq = "text_encoder->identifier->degradation_tokenizer->bridge->unet"
    _exclude_from_cpu_offload = ["adapter"]  # its linears run inside unet.forward
    _optional_components = ["identifier", "text_encoder", "text_tokenizer"]
    _callback_tensor_inputs = ["latents"]
    # set_precision("auto") may use bfloat16: defusion-small keeps PSNR within 0.03 dB on 13 synthetic and real
    # tasks (benchmarks/results/precision_cpu.md)
    auto_bf16 = True
    # pixels of reflected context padded around every image (defusion.tiling.pad_with_context): a flat image's
    # border band drops from 7 to 1 grey level (haze) with 16 (benchmarks/restore_profile.py --borders)
    context_border = 16

    @classmethod
    def legacy_components(cls, folder, kwargs: dict) -> dict:
        """Folders saved before the degradation tokenizer was renamed hold it as ``tokenizer``."""
        legacy = Path(folder) / "tokenizer"
        if "degradation_tokenizer" not in kwargs and legacy.is_dir() and not (Path(folder) / "degradation_tokenizer").is_dir():
            kwargs = {**kwargs, "degradation_tokenizer": DegradationTokenizer.from_pretrained(legacy, dtype=kwargs.get("dtype"))}
        return kwargs

    def __init__(
        self,
        unet: DefusionUNet,
        bridge: ImageRestorationBridge,
        adapter: VisualInstructionAdapter,
        degradation_tokenizer: DegradationTokenizer,
        scheduler: DDIMScheduler,
        identifier: DegradationIdentifier | None = None,
        text_encoder: CLIPTextModel | None = None,
        text_tokenizer: CLIPTokenizer | None = None,
        diffusion_space: str = "degradation",
        ground: str = "pool",
        noise_estimator: str = "pca",
        noise_scale: float = 1.0,
        default_steps: int = 4,
        default_self_ensemble: int = 1,
    ):
        super().__init__()
        check_space(diffusion_space)
        if ground not in GROUND_KINDS:
            raise ValueError(f"ground must be one of {GROUND_KINDS}, got {ground!r}")
        if noise_estimator not in NOISE_ESTIMATORS:
            raise ValueError(f"noise_estimator must be one of {NOISE_ESTIMATORS}, got {noise_estimator!r}")
        if not 0.0 < float(noise_scale) <= 2.0:
            raise ValueError(f"noise_scale must be in (0, 2], got {noise_scale!r}")
        if isinstance(default_steps, bool) or not isinstance(default_steps, int) or default_steps < 1:
            raise ValueError(f"default_steps must be a positive integer, got {default_steps!r}")
        ensemble_passes(default_self_ensemble)  # raises on anything but 1, 2, 4, 8, 16, 32 (or a bool)
        if degradation_tokenizer.token_dim != adapter.config.token_dim:
            raise ValueError(f"degradation_tokenizer tokens are {degradation_tokenizer.token_dim}-d but the adapter "
                             f"expects {adapter.config.token_dim}")  # fmt: skip
        if text_encoder is not None and text_encoder.config.hidden_size != unet.config.cross_attention_dim:
            raise ValueError(
                f"text encoder width {text_encoder.config.hidden_size} != the U-Net's cross_attention_dim "
                f"{unet.config.cross_attention_dim}"
            )
        self.register_modules(
            unet=unet, bridge=bridge, adapter=adapter, degradation_tokenizer=degradation_tokenizer, scheduler=scheduler,
            identifier=identifier, text_encoder=text_encoder, text_tokenizer=text_tokenizer,
        )  # fmt: skip
        self.register_to_config(
            diffusion_space=diffusion_space, ground=ground, noise_estimator=noise_estimator, noise_scale=float(noise_scale),
            default_steps=default_steps, default_self_ensemble=ensemble_passes(default_self_ensemble),
        )  # fmt: skip

    @property
    def denoiser(self) -> DefusionDenoiser:
        """The conditioned forward over this pipeline's ``unet``, ``bridge`` and ``adapter`` (rebuilt if one of
        them is replaced)."""
        parts = (self.unet, self.bridge, self.adapter)
        cached = self.__dict__.get("_denoiser")
        if cached is None or any(a is not b for a, b in zip((cached.unet, cached.bridge, cached.adapter), parts)):
            cached = DefusionDenoiser(*parts)
            self.__dict__["_denoiser"] = cached
        return cached

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str = "tiny", prediction_type: str = "sample", **config) -> "DefusionPipeline":
        """An untrained pipeline of a named size (``tiny`` for tests, ``small`` ships, ``paper``)."""
        unet = DefusionUNet.from_preset(name)
        tokenizer = DegradationTokenizer.from_preset(name)
        return cls(
            unet=unet,
            bridge=ImageRestorationBridge.for_unet(unet),
            adapter=VisualInstructionAdapter.from_unet(unet, token_dim=tokenizer.token_dim),
            degradation_tokenizer=tokenizer,
            scheduler=make_scheduler(prediction_type),
            identifier=DegradationIdentifier.from_preset(name),
            **config,
        )

    @classmethod
    def from_unet(cls, unet, tokenizer: DegradationTokenizer, scheduler=None, patch_size: int = 1, **config):
        """Adapt a pretrained diffusers U-Net (any noise schedule: its scheduler's betas are kept) into Defusion:
        conv_in/conv_out re-shaped to RGB, a zero-initialised bridge and an adapter with copied k/v."""
        dunet = DefusionUNet.from_unet(unet, patch_size=patch_size)
        if scheduler is not None:
            sched_cfg = {k: v for k, v in scheduler.config.items() if not k.startswith("_")}
            scheduler = DDIMScheduler.from_config(sched_cfg, timestep_spacing="trailing", clip_sample=False)
        return cls(
            unet=dunet,
            bridge=ImageRestorationBridge.for_unet(dunet),
            adapter=VisualInstructionAdapter.from_unet(dunet, token_dim=tokenizer.token_dim),
            degradation_tokenizer=tokenizer,
            scheduler=scheduler or make_scheduler("sample"),
            **config,
        )

    @property
    def multiple(self) -> int:
        return max(self.unet.downsample_factor, self.bridge.downsample_factor)

    # ---- instructions -------------------------------------------------------------------------
    def make_instruction(self, instruction, seed: int = 0) -> VisualInstruction | None:
        """A VisualInstruction from a VisualInstruction, a degradation spec, a name string or None."""
        if instruction is None or isinstance(instruction, VisualInstruction):
            return instruction
        if not isinstance(instruction, (str, D.Degradation, list, tuple)):
            raise ValueError(f"instruction must be a name string like 'rain+noise', 'auto', a degradation spec, a "
                             f"VisualInstruction or None, got {type(instruction).__name__} {instruction!r}")  # fmt: skip
        if isinstance(instruction, str) and instruction.strip().lower() in ("", "none"):
            return None
        if isinstance(instruction, str) and instruction.strip().lower() == "auto":
            raise ValueError("instruction='auto' is resolved per image by identify(); call the pipeline with it")
        spec = D.parse(instruction, rng=seed)
        size = self.degradation_tokenizer.config.input_size
        return VisualInstruction.from_spec(spec, seed=seed, size=max(64, size), ground=self.config.ground)

    def identify(self, image: np.ndarray, seed: int = 0):
        """Blind mode: the identifier's findings for one image and the instruction built from them (kinds in
        order of likelihood, each at its estimated severity; Gaussian noise at ``noise_scale`` x the sigma that
        ``noise_estimator`` reads off the image); (findings, None) when the image looks clean."""
        if self.identifier is None:
            raise ValueError("instruction='auto' needs a degradation identifier; this pipeline has none")
        found = self.identifier.identify(image)
        if not found:
            return found, None
        # the identifier says whether there is Gaussian noise; its sigma comes closer from a noise estimator (the
        # severity head overestimates sigma 25 by up to 10 on test images; benchmarks/noise_sigma.py compares them)
        if any(k == "noise" for k, _, _ in found):
            sigma = self.config.noise_scale * estimate_noise_sigma(image, method=self.config.noise_estimator)
            found = [(k, p, 255.0 * sigma / 50.0 if k == "noise" else s) for k, p, s in found]
        rng = np.random.default_rng(seed)
        spec = D.Compose([D.get(k).from_severity(float(np.clip(s, 0.0, 1.0)), rng) for k, _, s in found])
        size = max(64, self.degradation_tokenizer.config.input_size)
        return found, VisualInstruction.from_spec(spec, seed=seed, size=size, ground=self.config.ground)

    def encode_instruction(self, instructions: list[VisualInstruction | None], device, dtype) -> torch.Tensor:
        """Residual degradation tokens per image: (B, N, token_dim). ``None`` (no instruction) gives zero residual
        tokens, the same as an undegraded ground."""
        tok = self.degradation_tokenizer
        n, d = tok.num_tokens, tok.token_dim
        tokens = torch.zeros(len(instructions), n, d, device=device, dtype=dtype)
        # tokens depend on the instruction and null images and the tokenizer's weights only: a folder restored with
        # one instruction tokenizes it once (the key changes when the weights are changed in place or replaced)
        owner, cache = self.__dict__.get("_token_cache", (None, {}))
        if owner is not tok:  # a replaced tokenizer starts an empty cache
            cache = {}
            self.__dict__["_token_cache"] = (tok, cache)
        versions = tuple(p._version for p in tok.parameters())  # torch bumps these on every in-place update
        keys = {i: (hashlib.sha1(np.ascontiguousarray(inst.image).tobytes() + np.ascontiguousarray(inst.null).tobytes())
                    .hexdigest(), versions) for i, inst in enumerate(instructions) if inst is not None}  # fmt: skip
        missing = [i for i, k in keys.items() if k not in cache]
        if missing:
            res = tok.tokenize([instructions[i] for i in missing])
            if len(cache) + len(missing) > TOKEN_CACHE:
                cache.clear()
            for j, i in enumerate(missing):
                cache[keys[i]] = res[j].detach()
        for i, k in keys.items():
            tokens[i] = cache[k].to(device=device, dtype=dtype)
        return tokens

    @staticmethod
    def ensemble_views(passes: int, instructions: list[VisualInstruction | None]) -> list[tuple[int, int, int]]:
        """The self-ensemble's views for images restored together: only rotations/flips and grid shifts that
        every instruction's degradations are invariant to (``D.ensemble_symmetry``), so no pass shows the
        model sideways rain or upside-down haze; fewer than ``passes`` views where fewer are allowed."""
        modes, shifts = D.ensemble_symmetry(D.Compose([i.spec for i in instructions if i is not None]))
        return ensemble_plan(passes, modes=modes, shifts=shifts)

    # ---- the call -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        image,
        instruction: Any = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        tile_size: int | None = 512,
        tile_overlap: int = 32,
        prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        instruction_scale: float | None = None,
        eta: float = 0.0,
        instruction_seed: int = 0,
        self_ensemble: bool | int | None = None,
        callback_on_step_end: Callable[["DefusionPipeline", int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
    ):
        """Restore ``image``.

        Args:
            image: PIL image, numpy array (HWC, uint8/uint16/float in [0, 1]), torch tensor (CHW / BCHW in [0, 1]),
                or a list of them (sizes may differ). Grey images are repeated to RGB; RGBA is composited on white.
            instruction: what to remove: a ``VisualInstruction``, a degradation spec, a name string like
                ``"rain+noise"``, ``"auto"`` (blind: the identifier decides), None (no instruction), or a list
                with one of those per image.
            num_inference_steps: DDIM steps (4 in the paper); None: the pipeline's ``default_steps``.
            generator: torch generator(s) for the initial noise; with ``eta=0`` the result is deterministic.
            output_type: ``"pil"``, ``"np"`` (BHWC) or ``"pt"`` (BCHW), in [0, 1].
            eta: DDIM's eta, in [0, 1) (0: deterministic).
            tile_size / tile_overlap: images larger than ``tile_size`` are processed in overlapping tiles at every
                step and blended (memory bounded by the tile); None disables tiling.
            prompt: a text instruction (e.g. ``"remove rain"``) for the U-Net's text cross-attention, encoded by
                the pipeline's optional CLIP text encoder (the paper's text-instruction ablation).
            prompt_embeds: precomputed text embeddings (B or 1, L, cross_attention_dim) instead of ``prompt``;
                default (neither given): one zero token.
            instruction_scale: scale of the visual-instruction branch for this call (0 switches it off); default: the
                adapter's ``config.scale`` (as trained). Nothing of it stays for later calls.
            instruction_seed: seed of the ground and the degradation drawn for name-string instructions.
            self_ensemble: average several restorations of each image, each of it rotated/flipped and moved by a
                one-pixel grid shift (``defusion.ensemble.ensemble_plan``), every pass from the same initial noise
                state: True for 8 passes, or the number of passes (1, 2, 4, 8, 16 or 32); N passes take N times as
                long. On sigma-25 noise 4 passes give most of the gain (model card). Only views the instruction's
                degradations are invariant to are used (``ensemble_views``): no 90-degree turns for rain or snow,
                only left-right flips for haze, underwater and raindrops, one pass for JPEG. None: the pipeline's
                ``default_self_ensemble``.
            callback_on_step_end: called as ``fn(pipe, step_index, timestep, callback_kwargs)`` after each DDIM step
                (once per step for a batch of same-sized images, after every view and tile of that step), as in
                diffusers pipelines. ``callback_kwargs`` holds the tensors named in
                ``callback_on_step_end_tensor_inputs``: ``"latents"``, the degradation-space state y_t (B, 3, H, W),
                padded (``context_border`` pixels of reflected context, then to a multiple); with several
                self-ensemble views, a list with one state per view. Return a dict; a ``"latents"`` entry replaces
                the state.
        """
        passes = ensemble_passes(self.config.default_self_ensemble if self_ensemble is None else self_ensemble)
        if num_inference_steps is None:
            num_inference_steps = self.config.default_steps
        max_steps = self.scheduler.config.num_train_timesteps
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)) or not 1 <= num_inference_steps <= max_steps:
            raise ValueError(f"num_inference_steps must be an integer from 1 to {max_steps}, got {num_inference_steps!r}")
        check_output_type(output_type)
        check_tiling(tile_size, tile_overlap, self.multiple)
        check_eta(eta, self.scheduler)
        if num_inference_steps * passes > LONG_CALL:
            logger.warning(f"{num_inference_steps} steps x {passes} views = {num_inference_steps * passes} U-Net evaluations "
                           f"per image (per tile): this will take long; the shipped defaults use 4")  # fmt: skip
        if isinstance(instruction_seed, bool) or not isinstance(instruction_seed, (int, np.integer)) or not 0 <= instruction_seed < 2**63:
            raise ValueError(f"instruction_seed must be a whole number from 0 to 2**63 - 1, got {instruction_seed!r}")
        images = as_image_list(image)
        insts = list(instruction) if isinstance(instruction, list) else [instruction] * len(images)
        if len(insts) != len(images):
            raise ValueError(f"got {len(insts)} instructions for {len(images)} images")
        detected = None
        if any(isinstance(i, str) and i.strip().lower() == "auto" for i in insts):
            detected = [None] * len(images)
            for j, i in enumerate(insts):
                if isinstance(i, str) and i.strip().lower() == "auto":
                    detected[j], insts[j] = self.identify(images[j], seed=instruction_seed)
        insts = [self.make_instruction(i, seed=instruction_seed) for i in insts]
        gens = generator if isinstance(generator, list) else [generator] * len(images)
        if len(gens) != len(images):
            raise ValueError(f"got {len(gens)} generators for {len(images)} images")
        if not all(g is None or isinstance(g, torch.Generator) for g in gens):
            raise ValueError(f"generator must be a torch.Generator (or a list, one per image), got {generator!r}")
        if instruction_scale is not None:
            check_scale(instruction_scale, len(images))
        bad = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if bad:
            raise ValueError(f"callback_on_step_end_tensor_inputs may name {self._callback_tensor_inputs}, got {sorted(bad)}")
        callback = (callback_on_step_end, tuple(callback_on_step_end_tensor_inputs)) if callback_on_step_end else None

        device, dtype = self._execution_device, self.unet.dtype
        if prompt is not None:
            if prompt_embeds is not None:
                raise ValueError("give prompt or prompt_embeds, not both")
            prompt_embeds = self.encode_prompt(prompt, device, dtype)
        tokens = self.encode_instruction(insts, device, dtype)

        # images of one size run as a batch; different sizes run one after another
        groups = group_by_shape(images)
        plans = {shape: self.ensemble_views(passes, [insts[i] for i in idx]) for shape, idx in groups.items()}
        regions = tile_size is not None and callback is None
        total = sum(self._evaluations(*shape[:2], plans[shape], num_inference_steps, tile_size, tile_overlap, regions)
                    for shape in groups)  # fmt: skip
        results: dict[int, torch.Tensor] = {}
        with self.progress_bar(total=total) as bar:
            for shape, idx in groups.items():
                x = to_model_batch([images[i] for i in idx], device, dtype)
                for i in idx:
                    images[i] = None  # the batch holds them now (a large image's float copy is 200 MB)
                text = self._text_embeds(prompt_embeds, len(idx), device, dtype)
                g = [gens[i] for i in idx]
                scale = instruction_scale
                if isinstance(scale, torch.Tensor) and scale.numel() > 1:
                    scale = scale.flatten()[idx].to(device)

                def restore(parts, idx=idx, text=text, g=g, scale=scale, views=plans[shape]):
                    return self._restore(parts[0], tokens[idx], text, scale, num_inference_steps, g if any(g) else None,
                                         views, tile_size, tile_overlap, eta, callback, bar)  # fmt: skip

                # a very large image restores region by region (all views and steps of one region, then the next),
                # so its full-size state is not held once per view and step; a step callback sees whole images
                region, overlap = _region(tile_size) if regions else (None, 0)
                restored = tiled_apply(restore, [x], region, overlap)
                del x
                for j, i in enumerate(idx):
                    results[i] = restored[j]
        if not all(bool(torch.isfinite(r).all()) for r in results.values()):
            raise ValueError("the restoration is not finite (NaN or inf): the weights may be damaged (reload the model "
                             "folder), or a setting such as eta or instruction_scale is out of range")  # fmt: skip
        outputs = restored if len(groups) == 1 else [results[i] for i in range(len(images))]  # one group: in order
        images_out = postprocess(outputs, output_type)
        labels = [i.label if i is not None else "none" for i in insts]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images_out, labels)
        return DefusionPipelineOutput(images=images_out, instructions=labels, detected=detected)

    def encode_prompt(self, prompt: str | list[str], device, dtype) -> torch.Tensor:
        """Text instruction(s) -> (B, L, cross_attention_dim) with the pipeline's CLIP text encoder."""
        if self.text_encoder is None or self.text_tokenizer is None:
            raise ValueError("prompt= needs a text_encoder and a text_tokenizer; this pipeline has none")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        max_len = min(self.text_tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings)
        ids = self.text_tokenizer(prompts, padding="max_length", max_length=max_len, truncation=True, return_tensors="pt")
        out = self.text_encoder(ids.input_ids.to(self.text_encoder.device)).last_hidden_state
        return out.to(device, dtype)

    def _text_embeds(self, prompt_embeds, batch, device, dtype):
        dim = self.unet.config.cross_attention_dim
        if prompt_embeds is None:
            return torch.zeros(batch, 1, dim, device=device, dtype=dtype)
        if prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != dim:
            raise ValueError(f"prompt_embeds must be (B, L, {dim}), got {tuple(prompt_embeds.shape)}")
        pe = prompt_embeds.to(device, dtype)
        return pe.expand(batch, -1, -1) if pe.shape[0] == 1 else pe

    def num_evaluations(self, height: int, width: int, instruction: Any = None, num_inference_steps: int | None = None,
                        self_ensemble: bool | int | None = None, tile_size: int | None = 512, tile_overlap: int = 32) -> int:
        """How many denoiser evaluations (tiles x views x steps) a call with these arguments runs on one
        (height, width) image: what its progress bar counts. ``instruction`` as in ``__call__`` but not
        ``"auto"`` (resolve it with ``identify`` first: what is found decides the views)."""
        passes = ensemble_passes(self.config.default_self_ensemble if self_ensemble is None else self_ensemble)
        steps = self.config.default_steps if num_inference_steps is None else num_inference_steps
        check_tiling(tile_size, tile_overlap, self.multiple)
        views = self.ensemble_views(passes, [self.make_instruction(instruction)])
        return self._evaluations(height, width, views, steps, tile_size, tile_overlap, regions=True)

    def _evaluations(self, height, width, views, steps, tile_size, tile_overlap, regions=False) -> int:
        if regions and tile_size is not None and max(height, width) > REGION_TILES * tile_size:
            region, overlap = _region(tile_size)
            rh, ys = tile_layout(height, region, overlap)
            rw, xs = tile_layout(width, region, overlap)
            return len(ys) * len(xs) * self._evaluations(rh, rw, views, steps, tile_size, tile_overlap)
        m, border = self.multiple, self.context_border
        tile = context_tile(tile_size, border, m, extra=1 if len(views) > 1 else 0)
        return steps * sum(tile_count(*padded_size(*view_size(height, width, *v), m, border), tile, tile_overlap, m)
                           for v in views)  # fmt: skip

    def _restore(self, x_lq, tokens, text, scale, steps, generator, views, tile_size, tile_overlap, eta, callback, bar):
        """The DDIM loop for one batch of same-sized images on every self-ensemble view; returns the mean of the
        views' restorations, (B, 3, H, W) in [-1, 1].

        With one view the image is restored as it is, from ``generator``. With several, each view (a rotation/flip
        and a one-pixel shift, ``ensemble_view``) starts from a copy of the same generator state and has its own
        copy of the scheduler, so each view computes what a plain call on it would, and the views run one after
        another (memory of one view) unless a step callback needs all their states at each step. Every view is
        padded with reflected context (``defusion.tiling.pad_with_context``) and tiled with a tile that keeps an
        image of ``tile_size`` in one piece."""
        ensemble = len(views) > 1
        tile = context_tile(tile_size, self.context_border, self.multiple, extra=1 if ensemble else 0)
        if not ensemble or callback is not None:
            outs = self._restore_views(x_lq, tokens, text, scale, steps, generator, views, ensemble, tile,
                                       tile_overlap, eta, callback, bar)  # fmt: skip
            return outs[0] if not ensemble else sum(outs) / len(outs)
        total = 0
        for v in views:  # a running sum: one view's tensors at a time
            total = total + self._restore_views(x_lq, tokens, text, scale, steps, generator, [v], True, tile,
                                                tile_overlap, eta, None, bar)[0]  # fmt: skip
        return total / len(views)

    def _restore_views(self, x_lq, tokens, text, scale, steps, generator, views, ensemble, tile, tile_overlap, eta,
                       callback, bar):  # fmt: skip
        """The DDIM loop on ``views`` together (``_restore``); a list with each view's restoration, unviewed."""
        m, device = self.multiple, x_lq.device
        denoiser = self.denoiser
        # oneDNN's convolutions run 7-13 % faster on channels-last inputs on a CPU (benchmarks/restore_profile.py)
        memory = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        lqs, sizes, offsets, ys, scheds, gens = [], [], [], [], [], []
        for view in views:
            lq = ensemble_view(x_lq, *view) if ensemble else x_lq
            sizes.append(lq.shape[-2:])
            lq, offset = pad_with_context(lq, m, self.context_border)
            sched = copy.deepcopy(self.scheduler) if ensemble else self.scheduler
            sched.set_timesteps(steps, device=device)
            gen = [_copy(g) for g in generator] if ensemble and generator is not None else generator
            y = randn_tensor(lq.shape, generator=gen, device=device, dtype=lq.dtype) * sched.init_noise_sigma
            lqs.append(lq), offsets.append(offset), ys.append(y), scheds.append(sched), gens.append(gen)
        for i, t in enumerate(scheds[0].timesteps):
            for v in range(len(views)):

                def denoise(pair, sched=scheds[v]):
                    lq_tile, y_tile = (p.contiguous(memory_format=memory) for p in pair)
                    bar.update(1)
                    with self.autocast(device):  # set_precision: the state and the scheduler stay float32
                        pred = denoiser(sched.scale_model_input(y_tile, t), t, lq_tile, tokens, text, scale)
                    return pred.to(y_tile.dtype)

                pred = tiled_apply(denoise, [lqs[v], ys[v]], tile, tile_overlap, multiple=m)
                ys[v] = scheds[v].step(pred, t, ys[v], **step_kwargs(scheds[v], eta, gens[v])).prev_sample
            if callback is not None:
                fn, names = callback
                state = {"latents": list(ys) if ensemble else ys[0]}
                returned = fn(self, i, t, {k: state[k] for k in names}) or {}
                if "latents" in returned:
                    ys = list(returned["latents"]) if ensemble else [returned["latents"]]
        outs = []
        for view, lq, offset, size, y in zip(views, lqs, offsets, sizes, ys):
            restored = crop_context(restored_from(lq, y, self.config.diffusion_space), offset, size).clamp(-1, 1)
            outs.append(ensemble_unview(restored, *view) if ensemble else restored)
        return outs


def _region(tile_size: int) -> tuple[int, int]:
    """(size, overlap) of the regions a very large image restores in."""
    return REGION_TILES * tile_size, min(REGION_OVERLAP, tile_size)


def step_kwargs(scheduler, eta, generator) -> dict:
    """What ``scheduler.step`` takes beyond (output, t, sample): eta where it has one (DDIM), the generator where it
    draws noise; so any diffusers scheduler can replace the pipeline's (``defusion.diffusion.make_sampler``)."""
    params = inspect.signature(scheduler.step).parameters
    return {k: v for k, v in (("eta", eta), ("generator", generator)) if k in params}


def check_eta(eta, scheduler) -> None:
    """DDIM's eta: a number in [0, 1], below 1 with zero terminal SNR (there, eta = 1 takes the square root of a
    negative rounding error at the first step and every pixel comes out NaN); 0 for a scheduler without eta."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating)) or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
    if float(eta) != 0.0 and "eta" not in inspect.signature(scheduler.step).parameters:
        raise ValueError(f"eta is DDIM's; {type(scheduler).__name__} has none: leave eta at 0")
    if float(eta) >= 1.0 and scheduler.config.get("rescale_betas_zero_snr", False):
        raise ValueError("eta must be below 1 with this zero-terminal-SNR scheduler (try 0.99), got 1.0")


def _copy(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None:
        return None
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy
