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

from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DDIMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from .. import degradations as D
from ..degradations.noise import NOISE_ESTIMATORS, estimate_noise_sigma
from ..diffusion import check_space, make_scheduler, restored_from
from ..instructions import GROUND_KINDS, VisualInstruction
from ..models import DefusionUNet, DegradationTokenizer, ImageRestorationBridge, VisualInstructionAdapter
from ..perception import DegradationIdentifier
from ..tiling import ensemble_passes, ensemble_plan, ensemble_unview, ensemble_view, tiled_apply
from ..weights import resolve
from .image_io import as_image_list, check_output_type, group_by_shape, pad_to_multiple, postprocess, to_model_batch


@dataclass
class DefusionPipelineOutput(BaseOutput):
    """``images``: restored images (PIL list, np BHWC or pt BCHW in [0, 1]); ``instructions``: what the model was
    told for each image (a degradation label such as ``rain+noise(sigma=25)``, or ``"none"``); ``detected``: with
    ``instruction="auto"``, what the identifier found in each image."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    instructions: list[str] | None = None
    detected: list[list[tuple[str, float, float]]] | None = None  # instruction="auto": (kind, probability, severity)


class DefusionPipeline(DiffusionPipeline):
    """Components: ``unet`` (DefusionUNet), ``bridge`` (ImageRestorationBridge), ``adapter``
    (VisualInstructionAdapter), ``tokenizer`` (DegradationTokenizer), ``scheduler`` (DDIMScheduler, trailing,
    no clipping). Config: ``diffusion_space`` ("degradation", or "image" for the naive-diffusion ablation),
    ``ground`` ("pool", or "blank" / "simple" for the grounding ablations), and for blind mode
    ``noise_estimator`` ("pca" or "wavelet", ``defusion.degradations.noise.estimate_noise_sigma``) with
    ``noise_scale`` (the instructed sigma is ``noise_scale`` x the estimate). ``default_steps`` and
    ``default_self_ensemble`` are what a call without ``num_inference_steps`` / ``self_ensemble`` runs (4 DDIM
    steps and one pass, as in the paper, unless a saved model says otherwise: its model card says why)."""

    model_cpu_offload_seq = "text_encoder->identifier->tokenizer->bridge->unet"
    _exclude_from_cpu_offload = ["adapter"]  # its linears run inside unet.forward
    _optional_components = ["identifier", "text_encoder", "text_tokenizer"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """A saved pipeline folder, a hub id, or the name of a model shipped in ``defusion.weights``
        (e.g. ``"defusion-small"``)."""
        return super().from_pretrained(resolve(pretrained_model_name_or_path), **kwargs)

    def __init__(
        self,
        unet: DefusionUNet,
        bridge: ImageRestorationBridge,
        adapter: VisualInstructionAdapter,
        tokenizer: DegradationTokenizer,
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
        if tokenizer.token_dim != adapter.config.token_dim:
            raise ValueError(f"tokenizer tokens are {tokenizer.token_dim}-d but the adapter expects {adapter.config.token_dim}")
        if text_encoder is not None and text_encoder.config.hidden_size != unet.config.cross_attention_dim:
            raise ValueError(
                f"text encoder width {text_encoder.config.hidden_size} != the U-Net's cross_attention_dim "
                f"{unet.config.cross_attention_dim}"
            )
        self.register_modules(
            unet=unet, bridge=bridge, adapter=adapter, tokenizer=tokenizer, scheduler=scheduler, identifier=identifier,
            text_encoder=text_encoder, text_tokenizer=text_tokenizer,
        )  # fmt: skip
        self.register_to_config(
            diffusion_space=diffusion_space, ground=ground, noise_estimator=noise_estimator, noise_scale=float(noise_scale),
            default_steps=default_steps, default_self_ensemble=ensemble_passes(default_self_ensemble),
        )  # fmt: skip
        adapter.attach(unet)

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
            tokenizer=tokenizer,
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
            tokenizer=tokenizer,
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
        if isinstance(instruction, str) and instruction.strip().lower() in ("", "none"):
            return None
        if isinstance(instruction, str) and instruction.strip().lower() == "auto":
            raise ValueError("instruction='auto' is resolved per image by identify(); call the pipeline with it")
        spec = D.parse(instruction, rng=seed)
        size = self.tokenizer.config.input_size
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
        size = max(64, self.tokenizer.config.input_size)
        return found, VisualInstruction.from_spec(spec, seed=seed, size=size, ground=self.config.ground)

    def encode_instruction(self, instructions: list[VisualInstruction | None], device, dtype) -> torch.Tensor:
        """Residual degradation tokens per image, projected by the adapter: (B, N, cross_attention_dim).
        ``None`` (no instruction) gives zero residual tokens, the same as an undegraded ground."""
        n, d = self.tokenizer.num_tokens, self.tokenizer.token_dim
        tokens = torch.zeros(len(instructions), n, d, device=device, dtype=dtype)
        given = [i for i, inst in enumerate(instructions) if inst is not None]
        if given:
            res = self.tokenizer.tokenize([instructions[i] for i in given])
            tokens[given] = res.to(device=device, dtype=dtype)
        return self.adapter(tokens)

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
            tile_size / tile_overlap: images larger than ``tile_size`` are processed in overlapping tiles at every
                step and blended (memory bounded by the tile); None disables tiling.
            prompt: a text instruction (e.g. ``"remove rain"``) for the U-Net's text cross-attention, encoded by
                the pipeline's optional CLIP text encoder (the paper's text-instruction ablation).
            prompt_embeds: precomputed text embeddings (B or 1, L, cross_attention_dim) instead of ``prompt``;
                default (neither given): one zero token.
            instruction_scale: scale of the visual-instruction branch (0 switches it off); default: as trained.
            instruction_seed: seed of the ground and the degradation drawn for name-string instructions.
            self_ensemble: average several restorations of each image, each of it rotated/flipped and moved by a
                one-pixel grid shift (``defusion.tiling.ensemble_plan``), every pass from the same initial noise
                state: True for 8 passes, or the number of passes (1, 2, 4, 8, 16 or 32); N passes take N times as
                long. On sigma-25 noise 4 passes give most of the gain (model card). Only views the instruction's
                degradations are invariant to are used (``ensemble_views``): no 90-degree turns for rain or snow,
                only left-right flips for haze, underwater and raindrops, one pass for JPEG. None: the pipeline's
                ``default_self_ensemble``.
        """
        passes = ensemble_passes(self.config.default_self_ensemble if self_ensemble is None else self_ensemble)
        if num_inference_steps is None:
            num_inference_steps = self.config.default_steps
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        check_output_type(output_type)
        if tile_size is not None and tile_size % self.multiple:
            raise ValueError(f"tile_size must be a multiple of {self.multiple}, got {tile_size}")
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
        if instruction_scale is not None:
            self.adapter.set_scale(instruction_scale)

        device, dtype = self._execution_device, self.unet.dtype
        if prompt is not None:
            if prompt_embeds is not None:
                raise ValueError("give prompt or prompt_embeds, not both")
            prompt_embeds = self.encode_prompt(prompt, device, dtype)
        tokens = self.encode_instruction(insts, device, dtype)

        # images of one size run as a batch; different sizes run one after another
        groups = group_by_shape(images)
        results: dict[int, torch.Tensor] = {}
        for shape, idx in groups.items():
            x = to_model_batch([images[i] for i in idx], device, dtype)
            text = self._text_embeds(prompt_embeds, len(idx), device, dtype)
            g = [gens[i] for i in idx]
            views = self.ensemble_views(passes, [insts[i] for i in idx])
            if len(views) == 1:  # one pass, or an instruction that allows no other view (JPEG)
                restored = self._restore(x, tokens[idx], text, num_inference_steps, g if any(g) else None, tile_size, tile_overlap, eta)
            else:  # every pass starts from a copy of the same generator state, so each pass is a plain call
                # a view is up to one pixel larger than the image: a tile one multiple larger keeps an image that fits
                # one tile in one tile (a 512 px image would otherwise run its shifted views as four tiles)
                view_tile = None if tile_size is None else tile_size + self.multiple
                restored = sum(
                    ensemble_unview(self._restore(ensemble_view(x, *view), tokens[idx], text, num_inference_steps,
                                                  [_copy(gen) for gen in g] if any(g) else None, view_tile, tile_overlap, eta), *view)
                    for view in views
                ) / len(views)
            for j, i in enumerate(idx):
                results[i] = restored[j]
        outputs = torch.stack([results[i] for i in range(len(images))]) if len(groups) == 1 else [results[i] for i in range(len(images))]
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

    def _restore(self, x_lq, tokens, text, steps, generator, tile_size, tile_overlap, eta):
        b, _, h, w = x_lq.shape
        m = self.multiple
        x_lq = pad_to_multiple(x_lq, m)
        self.scheduler.set_timesteps(steps, device=x_lq.device)
        y = randn_tensor(x_lq.shape, generator=generator, device=x_lq.device, dtype=x_lq.dtype)
        y = y * self.scheduler.init_noise_sigma
        cond = (text, [tokens])
        n_tiles = 1 if tile_size is None else max(1, -(-x_lq.shape[-2] // tile_size)) * max(1, -(-x_lq.shape[-1] // tile_size))
        with self.progress_bar(total=steps * n_tiles) as bar:
            for t in self.scheduler.timesteps:

                def denoise(tiles):
                    lq_t, y_t = tiles
                    feats = self.bridge(lq_t)
                    out = self.unet(self.scheduler.scale_model_input(y_t, t), t, cond, bridge_features=feats,
                                    modulate_skip=self.bridge.config.modulate_skip).sample
                    bar.update(1)
                    return out

                pred = tiled_apply(denoise, [x_lq, y], tile_size, tile_overlap, multiple=m)
                y = self.scheduler.step(pred, t, y, eta=eta, generator=generator).prev_sample
        restored = restored_from(x_lq, y, self.config.diffusion_space)
        return restored[..., :h, :w].clamp(-1, 1)


def _copy(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None:
        return None
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy
