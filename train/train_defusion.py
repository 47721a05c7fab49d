#!/usr/bin/env python
"""Train or fine-tune Defusion: degradation-space diffusion with the Bridge and the Visual Instruction Adapter.

Fine-tune a shipped model on your own data (a folder of clean images degraded on the fly by a spec, or a folder
of real pairs such as lq/ + gt/, whose --degradation names what they show):

    accelerate launch train/train_defusion.py --pretrained defusion-small --train_dir my_photos/ \
        --degradation jpeg15+noise10 --output_dir runs/my-model --max_train_minutes 20 --cpu
    defusion restore in.png -o out.png --model runs/my-model/pipeline

Train from scratch (the recipes of the shipped model are in train/configs/):

    accelerate launch train/train_defusion.py --preset small --tokenizer runs/tokenizer-small/tokenizer \
        --clean_dirs ../shared/data/BSD400/gt --kinds noise,rain,haze --output_dir runs/defusion-small

Data: clean folders degraded on the fly by specs drawn from --kinds (or by --degradation), real paired folders,
Hugging Face image folders, mixed with --repeats. Each sample carries its spec; its visual instruction is
tokenized by the frozen degradation tokenizer (or looked up in an --instruction_bank). The objective: y0 = x_LQ -
x_HQ, DDIM (trailing, no clipping), --prediction_type sample|v_prediction|epsilon, batch MSE or --loss psnr.
AdamW, cosine learning rate to --min_learning_rate, EMA, checkpoints as save_pretrained subfolders,
--resume_from_checkpoint latest, validation grids (LQ | instruction | restored | GT) with PSNR on held-out
images. The final pipeline goes to output_dir/pipeline.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import itertools
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from defusion import degradations as D
from defusion.data import (
    DeviceBatches,
    InstructionBank,
    MixtureDataset,
    PairedFolderDataset,
    ResidentImages,
    SyntheticDegradationDataset,
    list_images,
    paired_layout,
)
from defusion.diffusion import clean_signal, make_scheduler, training_target
from defusion.images import make_grid, save_png
from defusion.instructions import VisualInstruction, text_instruction
from defusion.losses import LOSSES, restoration_loss
from defusion.metrics import psnr
from defusion.models import (
    DefusionDenoiser,
    DefusionUNet,
    DegradationTokenizer,
    ImageRestorationBridge,
    VisualInstructionAdapter,
)
from defusion.pipelines import DefusionPipeline
from defusion.pipelines.loading import native_bf16
from defusion.training_utils import (
    TrainHistory,
    load_ema,
    loggable_config,
    require_batches,
    resolve_resume,
    save_checkpoint,
    save_ema,
    step_of,
    tensor_to_image,
    validation_means,
)

logger = get_logger(__name__)
COMPONENTS = {"unet": DefusionUNet, "bridge": ImageRestorationBridge, "adapter": VisualInstructionAdapter}
# pipeline settings a fine-tune keeps from the model it starts from (blind mode and the default sampler)
KEPT_SETTINGS = ("noise_estimator", "noise_scale", "default_steps", "default_self_ensemble")


# ---------------------------------------------------------------------------------------------------- arguments
def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)

    g = p.add_argument_group("model")
    g.add_argument("--pretrained", "--pretrained_pipeline", dest="pretrained", default=None,
                   help="start from a shipped model (defusion-small) or a saved DefusionPipeline folder")
    g.add_argument("--preset", default="small", choices=["tiny", "small", "paper"], help="size of a fresh model")
    g.add_argument("--unet_overrides", default=None, help='JSON of DefusionUNet arguments that replace the preset\'s, '
                   'e.g. \'{"block_out_channels": [16, 32, 64, 96], "layers_per_block": 1}\' (a fresh model only)')
    g.add_argument("--tokenizer", default=None, help="trained DegradationTokenizer folder (frozen); a fresh model "
                   "needs one except for tiny")  # fmt: skip
    g.add_argument("--bridge_blocks", type=int, default=1, help="residual blocks per level of a fresh bridge")
    g.add_argument("--bridge_width0", type=int, default=0, help="level-0 width of a fresh bridge (0: the U-Net's)")
    g.add_argument("--prediction_type", default="sample", choices=["sample", "v_prediction", "epsilon"])
    g.add_argument("--diffusion_space", default="degradation", choices=["degradation", "image"])

    g = p.add_argument_group("data")
    g.add_argument("--train_dir", default=None, help="your data: a folder of clean images (degraded by "
                   "--degradation) or of pairs (lq/+gt/ and the other layouts of defusion.data.PAIR_LAYOUTS)")  # fmt: skip
    g.add_argument("--degradation", default=None, help="with --train_dir: e.g. jpeg15+noise10 (numbers fixed, "
                   "other parameters drawn per sample); for pairs, what they show")  # fmt: skip
    g.add_argument("--clean_dirs", nargs="*", default=[], help="folders of clean images, degraded on the fly")
    g.add_argument("--paired", nargs="*", default=[], help="DIR:DEGRADATION real pairs, e.g. data/Rain100L:rain")
    g.add_argument("--hf_imagefolder", nargs="*", default=[], help="folders loaded with datasets' imagefolder")
    g.add_argument("--repeats", nargs="*", type=int, default=None, help="repeat factor per dataset, in the order above")
    g.add_argument("--kinds", default="noise,rain,haze", help="registry names for the synthetic data")
    g.add_argument("--kind_weights", default=None, help="e.g. noise=4,jpeg=2: more frequent kinds (others 1)")
    g.add_argument("--severity", default=None,
                   help="per-kind severity ranges, e.g. jpeg=0.5:1 (quality 55..10); other kinds: uniform in [0.1, 1]")
    g.add_argument("--params", default=None,
                   help="parameters drawn apart from the severity, KIND.FIELD=LO:HI[:log][@SHARE], comma-separated; "
                        "e.g. low_light.noise=0.1:12:log@0.5: half the dark photos from clean to noisy at every "
                        "darkness, the other half as noisy as their severity says")  # fmt: skip
    g.add_argument("--max_mix", type=int, default=1, help="up to this many kinds mixed in one sample")
    g.add_argument("--p_single", type=float, default=1.0, help="probability of a single kind when max_mix > 1")
    g.add_argument("--resolution", type=int, default=256, help="training crop size")
    g.add_argument("--val_holdout", type=int, default=8, help="last N images of the first clean folder, for validation")
    g.add_argument("--dataloader_num_workers", type=int, default=0)
    g.add_argument("--data_on_device", action="store_true",
                   help="keep the clean images on the training device and crop, degrade and tokenize whole batches "
                        "there (defusion.data.DeviceBatches): the GPU path; needs --instruction_bank and clean images")  # fmt: skip

    g = p.add_argument_group("instructions")
    g.add_argument("--instruction_mode", default="visual", choices=["visual", "text", "none"],
                   help="ablations: 'text' tells the U-Net by a CLIP text prompt instead (adapter off), 'none' not at all")
    g.add_argument("--no_instruction", action="store_true", help="same as --instruction_mode none")
    g.add_argument("--text_encoder", default=None, help="CLIPTextModel folder (for --instruction_mode text)")
    g.add_argument("--text_tokenizer", default=None, help="CLIPTokenizer folder (for --instruction_mode text)")
    g.add_argument("--ground", default="pool", choices=["pool", "blank", "simple"])
    g.add_argument("--ground_cache", type=int, default=0, help="draw instruction grounds from a fixed set of N (speed)")
    g.add_argument("--instruction_bank", type=int, default=0,
                   help="tokenize N instructions once (saved in output_dir) instead of one per sample (CPU speed)")
    g.add_argument("--instruction_dropout", type=float, default=0.1, help="share of samples trained with no instruction")
    g.add_argument("--p_mismatch", type=float, default=0.0,
                   help="share of samples shown a non-matching instruction, with the input itself as target")

    g = p.add_argument_group("objective")
    g.add_argument("--timestep_sampling", default="uniform", choices=["uniform", "inference"],
                   help="uniform over all training timesteps, or only the DDIM inference timesteps")
    g.add_argument("--num_inference_steps", type=int, default=4, help="the inference timesteps (and validation steps)")
    g.add_argument("--p_first_step", type=float, default=None,
                   help="with --timestep_sampling inference: probability of the first (pure-noise) timestep, whose "
                        "prediction must come from the LQ image alone; default: uniform over the steps")  # fmt: skip
    g.add_argument("--loss", default="mse", choices=list(LOSSES),
                   help="mse: batch MSE; psnr: mean per-sample log MSE, so small degradations (JPEG, light noise) "
                        "are not drowned out by heavy ones")  # fmt: skip
    g.add_argument("--loss_eps", type=float, default=1e-3, help="floor added to each sample's MSE in the psnr loss")

    g = p.add_argument_group("optimisation")
    g.add_argument("--train_batch_size", type=int, default=8)
    g.add_argument("--max_train_steps", type=int, default=10000)
    g.add_argument("--max_train_minutes", type=float, default=None, help="stop (with a checkpoint) after this wall time")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--gradient_checkpointing", action="store_true")
    g.add_argument("--learning_rate", type=float, default=1e-4)
    g.add_argument("--min_learning_rate", type=float, default=1e-6, help="the cosine schedule ends here")
    g.add_argument("--lr_warmup_steps", type=int, default=0)
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.99)
    g.add_argument("--adam_weight_decay", type=float, default=1e-2)
    g.add_argument("--max_grad_norm", type=float, default=1.0)
    g.add_argument("--use_ema", action="store_true")
    g.add_argument("--ema_decay", type=float, default=0.999)
    g.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16", "auto"],
                   help="autocast precision; auto: bf16 where the device computes it natively (CUDA, or a CPU with "
                   "AMX / AVX512-BF16: a step of the small model 1.4x faster there), else no")  # fmt: skip
    g.add_argument("--allow_tf32", action="store_true")
    g.add_argument("--compile", action="store_true", help="torch.compile the denoiser's training forward")
    g.add_argument("--channels_last", action="store_true", help="channels-last memory format (GPU convolutions)")
    g.add_argument("--cpu", action="store_true")

    g = p.add_argument_group("run")
    g.add_argument("--output_dir", default="runs/defusion")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--report_to", default="tensorboard")
    g.add_argument("--logging_dir", default="logs")
    g.add_argument("--checkpointing_steps", type=int, default=1000)
    g.add_argument("--checkpoints_total_limit", type=int, default=3)
    g.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder, or 'latest'")
    g.add_argument("--validation_steps", type=int, default=500, help="also validates at the end; 0: only at the end")
    g.add_argument("--log_every", type=int, default=1,
                   help="log the mean loss every N steps (the loss stays on the device in between: no sync per step)")

    args = p.parse_args(input_args)
    check_args(p, args)
    return args


def check_args(p: argparse.ArgumentParser, args) -> None:
    """Reject bad combinations before any model is built (``p.error`` exits with the message)."""
    if not (args.train_dir or args.clean_dirs or args.paired or args.hf_imagefolder):
        p.error("give training data: --train_dir, --clean_dirs, --paired and/or --hf_imagefolder")
    if args.train_dir is not None:
        if not Path(args.train_dir).is_dir():
            p.error(f"--train_dir {args.train_dir} is not a folder")
        if not args.degradation:
            p.error("--train_dir needs --degradation: what to add to its clean images, or what its pairs show")
    if args.degradation is not None:
        try:
            D.parse(args.degradation)
        except ValueError as e:
            p.error(f"--degradation: {e}")
    if args.tokenizer is None and args.preset != "tiny" and args.pretrained is None:
        p.error("--tokenizer (a trained DegradationTokenizer folder) is required for this preset")
    if args.unet_overrides is not None:
        try:
            args.unet_overrides = json.loads(args.unet_overrides)
        except json.JSONDecodeError as e:
            p.error(f"--unet_overrides is not JSON: {e}")
        known = set(inspect.signature(DefusionUNet.__init__).parameters) - {"self"}
        if not isinstance(args.unet_overrides, dict) or not set(args.unet_overrides) <= known:
            p.error(f"--unet_overrides takes a JSON object of DefusionUNet arguments, got {args.unet_overrides!r}")
        if args.pretrained:
            p.error("--unet_overrides shapes a fresh model; --pretrained keeps its own")
    if args.no_instruction:
        args.instruction_mode = "none"
    if args.p_mismatch and args.instruction_mode != "visual":
        p.error("--p_mismatch needs --instruction_mode visual")
    if args.instruction_bank and args.instruction_mode == "text":
        p.error("--instruction_bank needs --instruction_mode visual or none (with none its specs only draw the "
                "degradations, so an ablation without instructions trains on the same data)")
    if args.instruction_bank and (args.paired or args.hf_imagefolder or (args.train_dir and paired_layout(args.train_dir))):
        p.error("--instruction_bank works with clean images only (--clean_dirs, or a --train_dir of clean images)")
    if args.data_on_device and (not args.instruction_bank or args.paired or args.hf_imagefolder
                                or (args.train_dir and paired_layout(args.train_dir))):  # fmt: skip
        p.error("--data_on_device needs --instruction_bank and clean images (--clean_dirs, or a --train_dir of clean "
                "images): the bank's specs degrade them on the device")  # fmt: skip
    if args.log_every < 1:
        p.error("--log_every must be >= 1")
    if not 0.0 <= args.p_mismatch <= 1.0:
        p.error("--p_mismatch must be in [0, 1]")
    if args.bridge_blocks < 1 or args.bridge_width0 < 0:
        p.error("--bridge_blocks must be >= 1 and --bridge_width0 >= 0")
    if args.p_first_step is not None and (args.timestep_sampling != "inference" or not 0.0 <= args.p_first_step <= 1.0):
        p.error("--p_first_step needs --timestep_sampling inference and a value in [0, 1]")
    if args.loss_eps <= 0:
        p.error("--loss_eps must be > 0")
    if args.instruction_mode == "text" and not (args.text_encoder and args.text_tokenizer):
        p.error("--instruction_mode text needs --text_encoder and --text_tokenizer (local CLIP folders)")
    if args.params and args.degradation:
        p.error("--params draws parameters of the --kinds mixture; --degradation names its own spec (its numbers "
                "fixed, the rest drawn by severity), so the two do not combine")  # fmt: skip
    try:
        parse_severity(args)  # bad kinds or ranges fail here
        parse_params(args)
    except ValueError as e:
        p.error(str(e))


# ---------------------------------------------------------------------------------------------------- data
def parse_kinds(args) -> tuple[list[str], list[float] | None]:
    """--kinds and --kind_weights -> (registry names, one weight per name or None)."""
    kinds = [D.get(k.strip()).name for k in args.kinds.split(",") if k.strip()]
    if not args.kind_weights:
        return kinds, None
    weights = dict.fromkeys(kinds, 1.0)
    for part in args.kind_weights.split(","):
        name, _, value = part.partition("=")
        name = D.get(name.strip()).name
        if name not in weights:
            raise ValueError(f"--kind_weights names {name!r}, which is not in --kinds {kinds}")
        weights[name] = float(value)
    return kinds, [weights[k] for k in kinds]


def parse_severity(args) -> dict | None:
    """--severity "jpeg=0.5:1,noise=0.2:0.8" -> {"jpeg": (0.5, 1.0), ...} for ``degradations.sample``."""
    if not args.severity:
        return None
    kinds = set(parse_kinds(args)[0])
    ranges = {}
    for part in args.severity.split(","):
        name, _, value = part.partition("=")
        lo, sep, hi = value.partition(":")
        name = D.get(name.strip()).name
        if name not in kinds:
            raise ValueError(f"--severity names {name!r}, which is not in --kinds {sorted(kinds)}")
        try:
            ranges[name] = (float(lo), float(hi)) if sep else float(lo)
        except ValueError:
            raise ValueError(f"--severity takes KIND=LO:HI or KIND=S, got {part!r}") from None
        D.get(name).sample(np.random.default_rng(0), ranges[name])  # validates the range
    return ranges


def parse_params(args) -> dict | None:
    """--params "low_light.noise=0.1:12:log@0.5" -> {"low_light": {"noise": (0.1, 12.0, "log", 0.5)}} for
    ``degradations.sample`` (the kinds must be in --kinds; no @SHARE: every step)."""
    if not args.params:
        return None
    kinds, _ = parse_kinds(args)
    out = {}
    for part in args.params.split(","):
        key, _, value = part.partition("=")
        kind, _, field = key.strip().partition(".")
        value, at, share = value.partition("@")
        bounds = value.split(":")
        if not field or len(bounds) not in (2, 3):
            raise ValueError(f"--params takes KIND.FIELD=LO:HI[:log][@SHARE], got {part!r}")
        try:
            draw = (float(bounds[0]), float(bounds[1]), bounds[2] if len(bounds) == 3 else "uniform",
                    float(share) if at else 1.0)  # fmt: skip
        except ValueError:
            raise ValueError(f"--params takes KIND.FIELD=LO:HI[:log][@SHARE], got {part!r}") from None
        name = D.get(kind.strip()).name
        if name not in kinds:
            raise ValueError(f"--params names {name!r}, which is not in --kinds {kinds}")
        out.setdefault(name, {})[field.strip()] = draw
    return D.check_params(out)


def make_instruction_bank(args, tokenizer) -> InstructionBank:
    """The --instruction_bank instructions of this run's mixture, tokenized (also prebuilt by device_campaign.py)."""
    kinds, weights = parse_kinds(args)
    degradation = args.degradation if args.train_dir else None
    return InstructionBank.build(tokenizer, args.instruction_bank, kinds, args.max_mix, args.p_single, weights,
                                 severity=parse_severity(args), seed=args.seed, ground=args.ground,
                                 ground_cache=args.ground_cache or 256, progress=True, degradation=degradation,
                                 params=parse_params(args))  # fmt: skip


def build_instruction_bank(args, tokenizer, out: Path, accelerator) -> InstructionBank:
    """Tokenize --instruction_bank instructions once (the main process), saved in the output folder for resumes."""
    bank_dir = out / "instruction_bank"
    if accelerator.is_main_process and not (bank_dir / "specs.json").is_file():
        make_instruction_bank(args, tokenizer).save(bank_dir)
    accelerator.wait_for_everyone()
    bank = InstructionBank.load(bank_dir)
    if bank.token_shape != (tokenizer.num_tokens, tokenizer.token_dim):
        raise ValueError(f"{bank_dir} holds tokens of shape {bank.token_shape}, not this tokenizer's")
    return bank


def build_datasets(args, instruction_size: int, bank=None):
    """The training mixture and the validation set (the last --val_holdout images of the first clean folder)."""
    kinds, weights = parse_kinds(args)
    common = dict(crop=args.resolution, instruction_size=instruction_size, ground=args.ground, seed=args.seed,
                  ground_cache=args.ground_cache)  # fmt: skip
    synthetic = dict(kinds=kinds, max_mix=args.max_mix, p_single=args.p_single, severity=parse_severity(args),
                     kind_weights=weights, p_mismatch=args.p_mismatch, params=parse_params(args))  # fmt: skip
    clean = [(d, None) for d in args.clean_dirs]
    paired = [(path, deg) for path, _, deg in (s.rpartition(":") for s in args.paired)]
    if any(not path for path, _ in paired):
        raise ValueError(f"--paired takes DIR:DEGRADATION, got {args.paired}")
    if args.train_dir:
        (paired if paired_layout(args.train_dir) else clean).insert(0, (args.train_dir, args.degradation))
    train, val_files, val_degradation = [], [], None
    for i, (folder, degradation) in enumerate(clean):
        files = list_images(folder)
        if i == 0 and args.val_holdout:
            if len(files) <= args.val_holdout:
                raise ValueError(f"{folder} has {len(files)} images, not more than --val_holdout {args.val_holdout}")
            files, val_files, val_degradation = files[: -args.val_holdout], files[-args.val_holdout :], degradation
        bank_specs = bank.specs if bank is not None else None
        train.append(SyntheticDegradationDataset(files, **common, **synthetic, bank_specs=bank_specs, degradation=degradation))
    train += [PairedFolderDataset(path, deg, **common) for path, deg in paired]
    for folder in args.hf_imagefolder:
        import datasets

        hf = datasets.load_dataset("imagefolder", data_dir=folder, split="train")
        train.append(SyntheticDegradationDataset(hf, **common, **synthetic))
    val = None
    if val_files:
        val = SyntheticDegradationDataset(val_files, kinds, train=False, degradation=val_degradation,
                                          **{**common, "seed": args.seed + 99})  # fmt: skip
    return MixtureDataset(train, args.repeats), val


# ---------------------------------------------------------------------------------------------------- model
def build_pipeline(args) -> DefusionPipeline:
    """The model training starts from: a shipped / saved pipeline (--pretrained) or a fresh one of --preset."""
    if args.pretrained:
        pipe = DefusionPipeline.from_pretrained(args.pretrained, dtype=torch.float32)
        if args.tokenizer:
            pipe.degradation_tokenizer = DegradationTokenizer.from_pretrained(args.tokenizer)
    else:
        unet = DefusionUNet.from_preset(args.preset, **(args.unet_overrides or {}))
        tokenizer = DegradationTokenizer.from_pretrained(args.tokenizer) if args.tokenizer else DegradationTokenizer.from_preset(args.preset)
        fc = [args.bridge_width0] + unet.encoder_channels[1:] if args.bridge_width0 else None
        bridge = ImageRestorationBridge.for_unet(unet, feature_channels=fc, num_res_blocks=args.bridge_blocks)
        adapter = VisualInstructionAdapter.from_unet(unet, token_dim=tokenizer.token_dim)
        pipe = DefusionPipeline(unet=unet, bridge=bridge, adapter=adapter, degradation_tokenizer=tokenizer,
                                scheduler=make_scheduler(args.prediction_type))  # fmt: skip
    if args.instruction_mode == "text":
        from transformers import CLIPTextModel, CLIPTokenizer

        pipe.text_encoder = CLIPTextModel.from_pretrained(args.text_encoder).requires_grad_(False).eval()
        pipe.text_tokenizer = CLIPTokenizer.from_pretrained(args.text_tokenizer)
        if pipe.text_encoder.config.hidden_size != pipe.unet.config.cross_attention_dim:
            raise ValueError(f"text encoder width {pipe.text_encoder.config.hidden_size} != cross_attention_dim "
                             f"{pipe.unet.config.cross_attention_dim}")  # fmt: skip
        pipe.adapter.register_to_config(scale=0.0)  # text instead of visual: the decoupled branch is off by default
    return pipe


def trained_pipeline(args, start: DefusionPipeline, denoiser: DefusionDenoiser) -> DefusionPipeline:
    """The pipeline to validate and save: the trained denoiser's parts with the start pipeline's frozen ones."""
    kept = {k: start.config[k] for k in KEPT_SETTINGS if k in start.config}
    return DefusionPipeline(
        unet=denoiser.unet, bridge=denoiser.bridge, adapter=denoiser.adapter,
        degradation_tokenizer=start.degradation_tokenizer, scheduler=make_scheduler(args.prediction_type),
        identifier=start.identifier, text_encoder=start.text_encoder, text_tokenizer=start.text_tokenizer,
        diffusion_space=args.diffusion_space, ground=args.ground, **kept,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------- one step
def inference_step_probs(n: int, p_first: float | None = None) -> torch.Tensor:
    """Sampling probabilities over the n inference timesteps (descending, so [0] is the pure-noise first step):
    uniform, or ``p_first`` on the first step and the rest shared equally by the others."""
    probs = torch.full((n,), 1.0 / n)
    if p_first is not None and n > 1:
        probs.fill_((1 - p_first) / (n - 1))
        probs[0] = p_first
    return probs


def sample_timesteps(args, scheduler, batch: int, device) -> torch.Tensor:
    """Training timesteps: uniform over all, or drawn from the inference timesteps (``inference_step_probs``)."""
    if args.timestep_sampling == "uniform":
        return torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=device)
    timesteps = inference_timesteps(scheduler.config.prediction_type, args.num_inference_steps)
    probs = inference_step_probs(args.num_inference_steps, args.p_first_step)
    return timesteps[torch.multinomial(probs, batch, replacement=True)].to(device)


@functools.lru_cache
def inference_timesteps(prediction_type: str, steps: int) -> torch.Tensor:
    """The DDIM timesteps a ``steps``-step inference visits (descending), computed once per setting."""
    sched = make_scheduler(prediction_type)
    sched.set_timesteps(steps)
    return sched.timesteps.clone()


@torch.no_grad()
def instruction_tokens(args, batch: dict, tokenizer: DegradationTokenizer, bank: InstructionBank | None) -> torch.Tensor:
    """Degradation tokens for a batch: tokenized instruction images or bank entries, some dropped to zero
    (never a mismatched sample's: its target depends on them); zeros without visual instructions."""
    x = batch["lq"]
    b = x.shape[0]
    if args.instruction_mode != "visual":
        return torch.zeros(b, tokenizer.num_tokens, tokenizer.token_dim, device=x.device)
    if "tokens" in batch:
        tokens = batch["tokens"]  # made with the batch (DeviceBatches)
    elif bank is not None:
        tokens = bank.lookup(batch["bank_index"], device=x.device)
    else:
        tokens = tokenizer.tokenize(batch["instruction"].float(), null=batch["null"].float())
    if args.instruction_dropout > 0:
        keep = (torch.rand(b, device=x.device) >= args.instruction_dropout) | batch["mismatch"].to(x.device)
        tokens = tokens * keep.to(tokens.dtype).view(b, 1, 1)
    return tokens


@torch.no_grad()
def text_embeddings(pipe: DefusionPipeline, batch: dict) -> torch.Tensor | None:
    """CLIP embeddings of each sample's text instruction (text mode), else None (the denoiser's zero token)."""
    if pipe.text_encoder is None:
        return None
    specs = [json.loads(s) for s in batch["spec"]]
    prompts = [text_instruction(D.from_dict(s) if s else None) for s in specs]
    return pipe.encode_prompt(prompts, batch["lq"].device, torch.float32)


def training_step(args, denoiser: DefusionDenoiser, scheduler, batch: dict, tokens, text=None) -> torch.Tensor:
    """The loss of one batch: noise the degradation y0 to a training timestep and score the denoiser's prediction
    against the scheduler's target (``restoration_loss``)."""
    x_lq, x_hq = batch["lq"], batch["gt"]
    y0 = clean_signal(x_lq, x_hq, args.diffusion_space).float()
    noise = torch.randn_like(y0)
    t = sample_timesteps(args, scheduler, y0.shape[0], y0.device)
    y_t = scheduler.add_noise(y0, noise, t)
    pred = denoiser(y_t, t, x_lq, tokens, text)
    return restoration_loss(pred.float(), training_target(scheduler, y0, noise, t), args.loss, args.loss_eps)


# ---------------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(args, pipe: DefusionPipeline, val_ds, out: Path, step: int) -> dict:
    """Restore the held-out images with their matching instruction; a grid PNG and the mean PSNR (dB)."""
    pipe.set_progress_bar_config(disable=True)
    rows, labels, psnr_in, psnr_out = [], [], [], []
    size = max(64, pipe.degradation_tokenizer.config.input_size)
    for i in range(len(val_ds)):
        item = val_ds[i]
        spec = D.from_dict(json.loads(item["spec"]))
        inst = VisualInstruction.from_spec(spec, seed=i, ground=args.ground, size=size) if args.instruction_mode == "visual" else None
        prompt = text_instruction(spec) if args.instruction_mode == "text" else None
        lq, gt = tensor_to_image(item["lq"]), tensor_to_image(item["gt"])
        res = pipe(lq, instruction=inst, prompt=prompt, num_inference_steps=args.num_inference_steps, output_type="np",
                   generator=torch.Generator().manual_seed(i), tile_size=None, self_ensemble=1).images[0]  # fmt: skip
        psnr_in.append(psnr(lq, gt, crop_multiple=None))
        psnr_out.append(psnr(res, gt, crop_multiple=None))
        rows += [lq, inst.image if inst is not None else np.zeros_like(lq), res, gt]
        labels += [f"LQ {psnr_in[-1]:.2f} dB", inst.label if inst else (prompt or "no instruction"),
                   f"restored {psnr_out[-1]:.2f} dB", "GT"]  # fmt: skip
    save_png(make_grid(rows, labels, cols=4, tile_height=128), out / "validation" / f"step_{step:07d}.png")
    return validation_means(psnr_in, psnr_out)


# ---------------------------------------------------------------------------------------------------- main
def resolve_mixed_precision(choice: str, cpu: bool) -> str:
    """--mixed_precision for Accelerate: "auto" becomes bf16 where the training device computes it natively, else
    "no"; bf16 asked for on a CPU that only emulates it (slower than float32) is kept, with a warning."""
    device = "cpu" if cpu or not torch.cuda.is_available() else "cuda"
    if choice == "auto":
        return "bf16" if native_bf16(device) else "no"
    if choice == "bf16" and device == "cpu" and not native_bf16(device):
        logging.getLogger(__name__).warning("this CPU has no AMX / AVX512-BF16: bf16 autocast is emulated, slower than float32")
    return choice


def main(args):
    out = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(args.mixed_precision, args.cpu),
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / args.logging_dir)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),  # the shuffle is a function of the epoch
        cpu=args.cpu,
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(args.seed)
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)

    # model: the denoiser trains; the degradation tokenizer and the text encoder stay frozen
    start = build_pipeline(args)
    for frozen in (start.degradation_tokenizer, start.text_encoder):
        if frozen is not None:
            frozen.float().requires_grad_(False).eval().to(accelerator.device)
    denoiser = DefusionDenoiser(start.unet, start.bridge, start.adapter)
    if args.gradient_checkpointing:
        denoiser.unet.enable_gradient_checkpointing()
    scheduler = make_scheduler(args.prediction_type)
    ema = EMAModel(denoiser.parameters(), decay=args.ema_decay, foreach=True) if args.use_ema else None

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            m = accelerator.unwrap_model(models[0])
            for name in COMPONENTS:
                getattr(m, name).save_pretrained(os.path.join(output_dir, name))
            if ema is not None:
                save_ema(ema, os.path.join(output_dir, "ema"))
        weights.clear()  # the components above are the checkpoint; accelerate writes no model_N files

    def load_hook(models, input_dir):
        m = accelerator.unwrap_model(models.pop())
        for name, cls in COMPONENTS.items():
            getattr(m, name).load_state_dict(cls.from_pretrained(input_dir, subfolder=name).state_dict())
        if ema is not None:
            load_ema(ema, os.path.join(input_dir, "ema"))
            ema.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    # data
    bank = build_instruction_bank(args, start.degradation_tokenizer, out, accelerator) if args.instruction_bank else None
    with accelerator.main_process_first():
        train_ds, val_ds = build_datasets(args, max(64, start.degradation_tokenizer.config.input_size), bank)
    device_data, loader = None, None
    if args.data_on_device:
        files = [f for ds in train_ds.datasets for f in ds.source]
        device_data = DeviceBatches(ResidentImages.from_files(files, accelerator.device), bank, args.resolution,
                                    args.train_batch_size, args.p_mismatch, seed=args.seed + 7919 * accelerator.process_index)  # fmt: skip
        logger.info(f"{len(files)} clean images resident on {accelerator.device} ({device_data.images.nbytes() / 2**20:.0f} MiB)")
    else:
        require_batches(train_ds, args.train_batch_size, accelerator.num_processes)
        loader = torch.utils.data.DataLoader(train_ds, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                             num_workers=args.dataloader_num_workers,
                                             generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    if args.channels_last:
        denoiser.to(memory_format=torch.channels_last)

    # optimisation
    fused = {"fused": True} if accelerator.device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, **fused)  # fmt: skip
    lr_sched = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes, min_lr=args.min_learning_rate,
    )  # fmt: skip
    if loader is None:
        denoiser, optimizer, lr_sched = accelerator.prepare(denoiser, optimizer, lr_sched)
    else:
        denoiser, optimizer, loader, lr_sched = accelerator.prepare(denoiser, optimizer, loader, lr_sched)
    forward = torch.compile(denoiser) if args.compile else denoiser
    if ema is not None:
        ema.to(accelerator.device)
    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers("defusion", config=loggable_config(args))

    global_step, skip = 0, 0
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps) if loader is not None else 1
    ckpt = resolve_resume(out, args.resume_from_checkpoint, warn=logger.warning)
    if ckpt is not None:
        logger.info(f"resuming from {ckpt}")
        accelerator.load_state(str(ckpt))
        global_step = step_of(ckpt)
        skip = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
    epoch = global_step // steps_per_epoch

    # the loop
    unwrapped = accelerator.unwrap_model(denoiser)
    history = TrainHistory(out / "train_history.jsonl")
    if accelerator.is_main_process:
        history.truncate_after(global_step)  # rows past the checkpoint resumed from are redone
    bar = tqdm(total=args.max_train_steps, initial=global_step, disable=not accelerator.is_local_main_process, desc="defusion")
    deadline = time.time() + 60 * args.max_train_minutes if args.max_train_minutes else None
    done = global_step >= args.max_train_steps
    loss_sum = torch.zeros((), device=accelerator.device)  # the loss stays on the device between log rows

    def batches():
        """Device batches by step (a resumed run continues with the same ones), or the loader's, epoch by epoch."""
        nonlocal skip, epoch
        if device_data is not None:
            for micro in itertools.count(global_step * args.gradient_accumulation_steps):
                batch = device_data.batch(micro)
                if args.channels_last:
                    batch.update({k: batch[k].contiguous(memory_format=torch.channels_last) for k in ("lq", "gt")})
                yield batch
        while True:
            train_ds.set_epoch(epoch)
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            yield from accelerator.skip_first_batches(loader, skip) if skip else loader
            skip, epoch = 0, epoch + 1

    if not done:
        for batch in batches():
            with accelerator.accumulate(denoiser):
                tokens = instruction_tokens(args, batch, start.degradation_tokenizer, bank)
                with accelerator.autocast():
                    loss = training_step(args, forward, scheduler, batch, tokens, text_embeddings(start, batch))
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(denoiser.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_sched.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            bar.update(1)
            if ema is not None:
                ema.step(denoiser.parameters())
            loss_sum += loss.detach()
            if global_step % args.log_every == 0:
                mean = float(accelerator.gather(loss_sum).mean()) / args.log_every
                row = {"step": global_step, "loss": mean, "lr": lr_sched.get_last_lr()[0]}
                history.append(row)
                accelerator.log(row, step=global_step)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                loss_sum.zero_()
            out_of_time = deadline is not None and time.time() > deadline
            if deadline is not None and accelerator.num_processes > 1:  # every process stops at the same step
                out_of_time = bool(accelerator.gather(torch.tensor([out_of_time], device=accelerator.device)).any())
            done = global_step >= args.max_train_steps or out_of_time
            if global_step % args.checkpointing_steps == 0 or done:
                save_checkpoint(accelerator, out, global_step, args.checkpoints_total_limit)
            if accelerator.is_main_process and val_ds is not None and (
                done or (args.validation_steps and global_step % args.validation_steps == 0)
            ):
                if ema is not None:
                    ema.store(denoiser.parameters())
                    ema.copy_to(denoiser.parameters())
                metrics = validate(args, trained_pipeline(args, start, unwrapped), val_ds, out, global_step)
                if ema is not None:
                    ema.restore(denoiser.parameters())
                accelerator.log(metrics, step=global_step)
                if history and history[-1]["step"] == global_step:
                    history[-1].update(metrics)
                else:
                    history.append({"step": global_step, **metrics})
                logger.info(f"step {global_step}: {metrics}")
            if accelerator.is_main_process and (global_step % args.checkpointing_steps == 0 or done):
                history.flush()  # the rows up to this checkpoint survive a kill
            if done:
                break

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(denoiser.parameters())
        trained_pipeline(args, start, unwrapped).save_pretrained(out / "pipeline")
        history.flush()
        (out / "run_config.json").write_text(json.dumps(loggable_config(args), indent=2))
    accelerator.end_training()
    return history


if __name__ == "__main__":
    main(parse_args())
