#!/usr/bin/env python
"""Train Defusion: degradation-space diffusion with the Bridge and the Visual Instruction Adapter.

    accelerate launch train/train_defusion.py --preset small --tokenizer runs/tokenizer-small/tokenizer \
        --clean_dirs ../shared/data/BSD400/gt --kinds noise,rain,haze --output_dir runs/defusion-small

Data: clean folders degraded on the fly (``--clean_dirs``, kinds from ``--kinds``, mixtures up to
``--max_mix``), real paired folders (``--paired DIR:DEGRADATION``), Hugging Face image folders
(``--hf_imagefolder``), mixed with ``--repeats``. Each sample carries its spec; its visual instruction is
tokenized by the frozen tokenizer. y0 = x_LQ - x_HQ (``--diffusion_space image`` for the naive ablation), DDIM
(trailing, no clipping), ``--prediction_type sample|v_prediction|epsilon``, loss: batch MSE or ``--loss psnr``
(mean per-sample log MSE). AdamW (0.9, 0.99), lr 1e-4 cosine to
1e-6, EMA, checkpoints with ``save_pretrained`` subfolders, ``--resume_from_checkpoint latest``, validation grids
(LQ | instruction | restored | GT) and PSNR on held-out images, mixed precision, gradient checkpointing.
The final pipeline goes to ``output_dir/pipeline``.
"""

from __future__ import annotations

import argparse
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
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import nn
from tqdm.auto import tqdm

from defusion.data import InstructionBank, MixtureDataset, PairedFolderDataset, SyntheticDegradationDataset, list_images
from defusion import degradations as D
from defusion.diffusion import clean_signal, make_scheduler, predicted_y0, restored_from, training_target
from defusion.instructions import VisualInstruction, text_instruction
from defusion.losses import LOSSES, restoration_loss
from defusion.models import DefusionUNet, DegradationTokenizer, ImageRestorationBridge, VisualInstructionAdapter
from defusion.pipelines import DefusionPipeline
from defusion.training_utils import (
    TrainHistory,
    load_ema,
    loggable_config,
    prune_checkpoints,
    require_batches,
    resolve_resume,
    save_ema,
    step_of,
    tensor_to_image,
)
from visual_grounds import make_grid, save_png

logger = get_logger(__name__)
COMPONENTS = {"unet": DefusionUNet, "bridge": ImageRestorationBridge, "adapter": VisualInstructionAdapter}


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--pretrained_pipeline", default=None, help="start from a saved DefusionPipeline folder")
    p.add_argument("--bridge_blocks", type=int, default=1, help="residual blocks per level of a fresh bridge")
    p.add_argument("--bridge_width0", type=int, default=0, help="level-0 width of a fresh bridge (0: the U-Net's)")
    p.add_argument("--tokenizer", default=None, help="trained DegradationTokenizer folder (frozen); required except for tiny")
    p.add_argument("--output_dir", default="runs/defusion")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clean_dirs", nargs="*", default=[], help="folders of clean images, degraded on the fly")
    p.add_argument("--paired", nargs="*", default=[], help="DIR:DEGRADATION real pairs, e.g. data/Rain100L:rain")
    p.add_argument("--hf_imagefolder", nargs="*", default=[], help="folders loaded with datasets' imagefolder")
    p.add_argument("--repeats", nargs="*", type=int, default=None, help="repeat factor per dataset, in the order above")
    p.add_argument("--kinds", default="noise,rain,haze", help="registry names for the synthetic data")
    p.add_argument("--kind_weights", default=None, help="e.g. noise=4,jpeg=2: more frequent kinds (others 1)")
    p.add_argument("--severity", default=None,
                   help="per-kind severity ranges, e.g. jpeg=0.5:1 (quality 55..10); other kinds: uniform in [0.1, 1]")
    p.add_argument("--instruction_bank", type=int, default=0,
                   help="tokenize N instructions once (saved in output_dir) instead of one per sample (CPU speed)")
    p.add_argument("--p_mismatch", type=float, default=0.0,
                   help="share of samples shown a non-matching instruction, with the input itself as target")
    p.add_argument("--max_mix", type=int, default=1, help="up to this many kinds mixed in one sample")
    p.add_argument("--p_single", type=float, default=1.0, help="probability of a single kind when max_mix > 1")
    p.add_argument("--val_holdout", type=int, default=8, help="last N images of the first clean dir held out for validation")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--ground_cache", type=int, default=0, help="draw instruction grounds from a fixed set of N (speed)")
    p.add_argument("--prediction_type", default="sample", choices=["sample", "v_prediction", "epsilon"])
    p.add_argument("--diffusion_space", default="degradation", choices=["degradation", "image"])
    p.add_argument("--ground", default="pool", choices=["pool", "blank", "simple"])
    p.add_argument("--no_instruction", action="store_true", help="ablation: zero tokens for every sample")
    p.add_argument("--instruction_mode", default="visual", choices=["visual", "text", "none"],
                   help="ablations: 'text' tells the U-Net by a CLIP text prompt instead (adapter off), 'none' not at all")
    p.add_argument("--text_encoder", default=None, help="CLIPTextModel folder (for --instruction_mode text)")
    p.add_argument("--text_tokenizer", default=None, help="CLIPTokenizer folder (for --instruction_mode text)")
    p.add_argument("--instruction_dropout", type=float, default=0.1, help="share of samples trained with no instruction")
    p.add_argument("--timestep_sampling", default="uniform", choices=["uniform", "inference"],
                   help="uniform over all training timesteps, or only the 4-step DDIM inference timesteps")  # fmt: skip
    p.add_argument("--p_first_step", type=float, default=None,
                   help="with --timestep_sampling inference: probability of the first (pure-noise) timestep, whose "
                        "prediction must come from the LQ image alone; default: uniform over the steps")
    p.add_argument("--loss", default="mse", choices=list(LOSSES),
                   help="mse: batch MSE; psnr: mean per-sample log MSE, so small degradations (JPEG, light noise) "
                        "are not drowned out by heavy ones")
    p.add_argument("--loss_eps", type=float, default=1e-3, help="floor added to each sample's MSE in the psnr loss")
    p.add_argument("--num_inference_steps", type=int, default=4)
    p.add_argument("--train_batch_size", type=int, default=8)
    p.add_argument("--max_train_steps", type=int, default=10000)
    p.add_argument("--max_train_minutes", type=float, default=None, help="stop (with a checkpoint) after this wall time")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--gradient_checkpointing", action="store_true")
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--min_learning_rate", type=float, default=1e-6)
    p.add_argument("--lr_warmup_steps", type=int, default=0)
    p.add_argument("--adam_beta1", type=float, default=0.9)
    p.add_argument("--adam_beta2", type=float, default=0.99)
    p.add_argument("--adam_weight_decay", type=float, default=1e-2)
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--use_ema", action="store_true")
    p.add_argument("--ema_decay", type=float, default=0.999)
    p.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--allow_tf32", action="store_true")
    p.add_argument("--report_to", default="tensorboard")
    p.add_argument("--logging_dir", default="logs")
    p.add_argument("--checkpointing_steps", type=int, default=1000)
    p.add_argument("--checkpoints_total_limit", type=int, default=3)
    p.add_argument("--resume_from_checkpoint", default=None)
    p.add_argument("--validation_steps", type=int, default=500, help="also validates at the end; 0: only at the end")
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--cpu", action="store_true")
    args = p.parse_args(input_args)
    if not (args.clean_dirs or args.paired or args.hf_imagefolder):
        p.error("give training data: --clean_dirs, --paired and/or --hf_imagefolder")
    if args.tokenizer is None and args.preset != "tiny" and args.pretrained_pipeline is None:
        p.error("--tokenizer (a trained DegradationTokenizer folder) is required for this preset")
    if args.no_instruction:
        args.instruction_mode = "none"
    if (args.instruction_bank or args.p_mismatch) and args.instruction_mode != "visual":
        p.error("--instruction_bank and --p_mismatch need --instruction_mode visual")
    if args.instruction_bank and (args.paired or args.hf_imagefolder):
        p.error("--instruction_bank works with --clean_dirs only")
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
    try:
        parse_severity(args)  # bad kinds or ranges fail here, before any model is built
    except ValueError as e:
        p.error(str(e))
    return args


def inference_step_probs(n: int, p_first: float | None = None) -> torch.Tensor:
    """Sampling probabilities over the n inference timesteps (descending, so [0] is the pure-noise first step):
    uniform, or ``p_first`` on the first step and the rest shared equally by the others."""
    probs = torch.full((n,), 1.0 / n)
    if p_first is not None and n > 1:
        probs.fill_((1 - p_first) / (n - 1))
        probs[0] = p_first
    return probs


class DefusionTrainingModule(nn.Module):
    """unet + bridge + adapter in one module, so DDP sees every trained parameter in one forward."""

    def __init__(self, unet: DefusionUNet, bridge: ImageRestorationBridge, adapter: VisualInstructionAdapter):
        super().__init__()
        self.unet, self.bridge, self.adapter = unet, bridge, adapter
        adapter.attach(unet)

    def forward(self, x_lq, y_t, t, tokens, text):
        feats = self.bridge(x_lq)
        return self.unet(y_t, t, (text, [self.adapter(tokens)]), bridge_features=feats,
                         modulate_skip=self.bridge.config.modulate_skip).sample


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


def build_datasets(args, instruction_size: int, bank=None):
    kinds, weights = parse_kinds(args)
    common = dict(crop=args.resolution, instruction_size=instruction_size, ground=args.ground, seed=args.seed,
                  ground_cache=args.ground_cache)  # fmt: skip
    severity = parse_severity(args)
    extra = dict(kind_weights=weights, p_mismatch=args.p_mismatch, bank_specs=bank.specs if bank is not None else None)
    train, val_files = [], []
    for i, d in enumerate(args.clean_dirs):
        files = list_images(d)
        if i == 0 and args.val_holdout:
            if len(files) <= args.val_holdout:
                raise ValueError(f"{d} has {len(files)} images, not more than --val_holdout {args.val_holdout}")
            files, val_files = files[: -args.val_holdout], files[-args.val_holdout :]
        train.append(SyntheticDegradationDataset(files, kinds, max_mix=args.max_mix, p_single=args.p_single, **common,
                                                 severity=severity, **extra))  # fmt: skip
    for spec in args.paired:
        path, _, deg = spec.rpartition(":")
        if not path:
            raise ValueError(f"--paired takes DIR:DEGRADATION, got {spec!r}")
        train.append(PairedFolderDataset(path, deg, **common))
    for d in args.hf_imagefolder:
        import datasets

        hf = datasets.load_dataset("imagefolder", data_dir=d, split="train")
        train.append(SyntheticDegradationDataset(hf, kinds, max_mix=args.max_mix, p_single=args.p_single, **common,
                                                 severity=severity, kind_weights=weights,
                                                 p_mismatch=args.p_mismatch))  # fmt: skip
    train_ds = MixtureDataset(train, args.repeats)
    val_ds = None
    if val_files:
        val_ds = SyntheticDegradationDataset(val_files, kinds, train=False, **{**common, "seed": args.seed + 99})
    return train_ds, val_ds


@torch.no_grad()
def validate(args, modules, tokenizer, scheduler, val_ds, out: Path, step: int, device, text=(None, None)):
    pipe = DefusionPipeline(
        unet=modules.unet, bridge=modules.bridge, adapter=modules.adapter, tokenizer=tokenizer, scheduler=scheduler,
        diffusion_space=args.diffusion_space, ground=args.ground, text_encoder=text[0], text_tokenizer=text[1],
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    rows, labels, psnr_in, psnr_out = [], [], [], []
    for i in range(len(val_ds)):
        item = val_ds[i]
        spec = D.from_dict(json.loads(item["spec"]))
        inst = None
        if args.instruction_mode == "visual":
            inst = VisualInstruction.from_spec(spec, seed=i, ground=args.ground, size=max(64, tokenizer.config.input_size))
        prompt = text_instruction(spec) if args.instruction_mode == "text" else None
        lq = tensor_to_image(item["lq"])
        gt = tensor_to_image(item["gt"])
        res = pipe(lq, instruction=inst, prompt=prompt, num_inference_steps=args.num_inference_steps, output_type="np",
                   generator=torch.Generator().manual_seed(i), tile_size=None).images[0]  # fmt: skip
        psnr_in.append(-10 * np.log10(np.mean((lq - gt) ** 2) + 1e-10))
        psnr_out.append(-10 * np.log10(np.mean((res - gt) ** 2) + 1e-10))
        ground = inst.image if inst is not None else np.zeros_like(lq)
        rows += [lq, ground, res, gt]
        labels += [f"LQ {psnr_in[-1]:.2f} dB", inst.label if inst else (prompt or "no instruction"),
                   f"restored {psnr_out[-1]:.2f} dB", "GT"]  # fmt: skip
    save_png(make_grid(rows, labels, cols=4, tile_height=128), out / "validation" / f"step_{step:07d}.png")
    return {"val_psnr_input": float(np.mean(psnr_in)), "val_psnr": float(np.mean(psnr_out))}


def main(args):
    out = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / args.logging_dir)),
        cpu=args.cpu,
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(args.seed)
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)

    if args.pretrained_pipeline:
        base = DefusionPipeline.from_pretrained(args.pretrained_pipeline, dtype=torch.float32)
        unet, bridge, adapter, tokenizer = base.unet, base.bridge, base.adapter, base.tokenizer
        # blind-mode and inference settings chosen for the start model carry over to the fine-tuned one
        keep = ("noise_estimator", "noise_scale", "default_steps", "default_self_ensemble")
        blind = {k: base.config[k] for k in keep if k in base.config}
    else:
        blind = {}
        unet = DefusionUNet.from_preset(args.preset)
        tokenizer = DegradationTokenizer.from_pretrained(args.tokenizer) if args.tokenizer else DegradationTokenizer.from_preset(args.preset)
        fc = [args.bridge_width0] + unet.encoder_channels[1:] if args.bridge_width0 else None
        bridge = ImageRestorationBridge.for_unet(unet, feature_channels=fc, num_res_blocks=args.bridge_blocks)
        adapter = VisualInstructionAdapter.from_unet(unet, token_dim=tokenizer.token_dim)
    if args.tokenizer and args.pretrained_pipeline:
        tokenizer = DegradationTokenizer.from_pretrained(args.tokenizer)
    tokenizer = tokenizer.float().requires_grad_(False).eval().to(accelerator.device)
    text_encoder = text_tok = None
    if args.instruction_mode == "text":
        from transformers import CLIPTextModel, CLIPTokenizer

        text_encoder = CLIPTextModel.from_pretrained(args.text_encoder).requires_grad_(False).eval().to(accelerator.device)
        text_tok = CLIPTokenizer.from_pretrained(args.text_tokenizer)
        if text_encoder.config.hidden_size != unet.config.cross_attention_dim:
            raise ValueError(f"text encoder width {text_encoder.config.hidden_size} != cross_attention_dim "
                             f"{unet.config.cross_attention_dim}")  # fmt: skip
        adapter.set_scale(0.0)  # text instead of visual: the decoupled branch is off
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    scheduler = make_scheduler(args.prediction_type)
    module = DefusionTrainingModule(unet, bridge, adapter)

    ema = None
    if args.use_ema:
        ema = EMAModel(module.parameters(), decay=args.ema_decay, foreach=True)  # one fused update, not one per tensor

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            m = accelerator.unwrap_model(models[0])
            for name in COMPONENTS:
                getattr(m, name).save_pretrained(os.path.join(output_dir, name))
            if ema is not None:
                save_ema(ema, os.path.join(output_dir, "ema"))
        while weights:
            weights.pop()

    def load_hook(models, input_dir):
        m = accelerator.unwrap_model(models.pop())
        for name, cls in COMPONENTS.items():
            loaded = cls.from_pretrained(input_dir, subfolder=name)
            getattr(m, name).load_state_dict(loaded.state_dict())
            del loaded
        m.adapter.attach(m.unet)
        if ema is not None:
            load_ema(ema, os.path.join(input_dir, "ema"))
            ema.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    optimizer = torch.optim.AdamW(module.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay)  # fmt: skip
    bank = None
    if args.instruction_bank:
        bank_dir = out / "instruction_bank"
        if accelerator.is_main_process and not (bank_dir / "specs.json").is_file():
            kinds, weights = parse_kinds(args)
            InstructionBank.build(tokenizer, args.instruction_bank, kinds, args.max_mix, args.p_single, weights,
                                  severity=parse_severity(args), seed=args.seed, ground=args.ground, ground_cache=args.ground_cache or 256,
                                  progress=True).save(bank_dir)  # fmt: skip
        accelerator.wait_for_everyone()
        bank = InstructionBank.load(bank_dir)
        if bank.tokens.shape[1:] != (tokenizer.num_tokens, tokenizer.token_dim):
            raise ValueError(f"{bank_dir} holds tokens of shape {tuple(bank.tokens.shape[1:])}, not this tokenizer's")
    with accelerator.main_process_first():
        train_ds, val_ds = build_datasets(args, instruction_size=max(64, tokenizer.config.input_size), bank=bank)
    require_batches(train_ds, args.train_batch_size, accelerator.num_processes)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.dataloader_num_workers,
                                         generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    if len(loader) == 0:
        raise ValueError(f"{len(train_ds)} training samples are fewer than one batch of {args.train_batch_size}")
    lr_sched = get_scheduler(
        "cosine", optimizer, num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )  # fmt: skip
    # cosine to min_learning_rate rather than 0: wrap the multiplier
    base_lambda = lr_sched.lr_lambdas[0]
    floor = args.min_learning_rate / args.learning_rate
    lr_sched.lr_lambdas[0] = lambda s: floor + (1 - floor) * base_lambda(s)
    module, optimizer, loader, lr_sched = accelerator.prepare(module, optimizer, loader, lr_sched)
    if ema is not None:
        ema.to(accelerator.device)
    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers("defusion", config=loggable_config(args))

    global_step, first_epoch, skip = 0, 0, 0
    ckpt = resolve_resume(out, args.resume_from_checkpoint)
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    if ckpt is not None:
        logger.info(f"resuming from {ckpt}")
        accelerator.load_state(str(ckpt))
        global_step = step_of(ckpt)
        first_epoch = global_step // steps_per_epoch
        skip = (global_step % steps_per_epoch) * args.gradient_accumulation_steps

    inference_t = make_scheduler(args.prediction_type)
    inference_t.set_timesteps(args.num_inference_steps)
    inference_t = inference_t.timesteps.to(accelerator.device)
    step_probs = inference_step_probs(len(inference_t), args.p_first_step).to(accelerator.device)
    unwrapped = accelerator.unwrap_model(module)
    bar = tqdm(total=args.max_train_steps, initial=global_step, disable=not accelerator.is_local_main_process, desc="defusion")
    deadline = time.time() + 60 * args.max_train_minutes if args.max_train_minutes else None
    history, done = TrainHistory(out / "train_history.jsonl"), global_step >= args.max_train_steps
    epoch = first_epoch
    while not done:
        train_ds.set_epoch(epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        active = accelerator.skip_first_batches(loader, skip) if skip else loader
        skip = 0
        for batch in active:
            with accelerator.accumulate(module):
                x_lq, x_hq = batch["lq"], batch["gt"]
                b = x_lq.shape[0]
                with torch.no_grad():
                    if args.instruction_mode != "visual":
                        tokens = torch.zeros(b, tokenizer.num_tokens, tokenizer.token_dim, device=x_lq.device)
                    else:
                        if bank is not None:
                            tokens = bank.lookup(batch["bank_index"], device=x_lq.device)
                        else:
                            tokens = tokenizer.tokenize(batch["instruction"].float(), null=batch["null"].float())
                        if args.instruction_dropout > 0:  # never for a mismatched sample: its target needs the tokens
                            keep = torch.rand(b, device=tokens.device) >= args.instruction_dropout
                            keep = keep | batch["mismatch"].to(tokens.device)
                            tokens = tokens * keep.to(tokens.dtype).view(b, 1, 1)
                y0 = clean_signal(x_lq, x_hq, args.diffusion_space).float()
                noise = torch.randn_like(y0)
                if args.timestep_sampling == "inference":
                    t = inference_t[torch.multinomial(step_probs, b, replacement=True)]
                else:
                    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), device=y0.device)
                y_t = scheduler.add_noise(y0, noise, t)
                if text_encoder is not None:
                    prompts = [text_instruction(D.from_dict(json.loads(sp)) if json.loads(sp) else None) for sp in batch["spec"]]
                    ids = text_tok(prompts, padding="max_length", truncation=True, return_tensors="pt",
                                   max_length=min(text_tok.model_max_length, text_encoder.config.max_position_embeddings))  # fmt: skip
                    with torch.no_grad():
                        text = text_encoder(ids.input_ids.to(y0.device)).last_hidden_state.float()
                else:
                    text = torch.zeros(b, 1, unwrapped.unet.config.cross_attention_dim, device=y0.device)
                with accelerator.autocast():
                    pred = module(x_lq, y_t, t, tokens, text)
                target = training_target(scheduler, y0, noise, t)
                loss = restoration_loss(pred, target, args.loss, args.loss_eps)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(module.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_sched.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            bar.update(1)
            if ema is not None:
                ema.step(module.parameters())
            with torch.no_grad():
                x0 = restored_from(x_lq, predicted_y0(scheduler, y_t, pred.detach().float(), t), args.diffusion_space)
                train_psnr = float(-10 * torch.log10(((x0.clamp(-1, 1) - x_hq) / 2).pow(2).mean() + 1e-10))
            row = {"step": global_step, "loss": float(accelerator.gather(loss.detach()).mean()), "x0_psnr": train_psnr,
                   "lr": lr_sched.get_last_lr()[0]}  # fmt: skip
            history.append(row)
            accelerator.log(row, step=global_step)
            bar.set_postfix(loss=f"{row['loss']:.4f}", psnr=f"{train_psnr:.2f}")
            out_of_time = False
            if deadline is not None:
                out_of_time = bool(accelerator.gather(torch.tensor([time.time() > deadline], device=accelerator.device)).any())
            done = global_step >= args.max_train_steps or out_of_time
            if global_step % args.checkpointing_steps == 0 or done:
                if accelerator.is_main_process:
                    prune_checkpoints(out, args.checkpoints_total_limit)
                accelerator.save_state(str(out / f"checkpoint-{global_step}"))
            if accelerator.is_main_process and val_ds is not None and (
                done or (args.validation_steps and global_step % args.validation_steps == 0)
            ):
                if ema is not None:
                    ema.store(module.parameters())
                    ema.copy_to(module.parameters())
                metrics = validate(args, unwrapped, tokenizer, make_scheduler(args.prediction_type), val_ds, out, global_step,
                                   accelerator.device, text=(text_encoder, text_tok))  # fmt: skip
                unwrapped.adapter.attach(unwrapped.unet)
                accelerator.log(metrics, step=global_step)
                history[-1].update(metrics)
                logger.info(f"step {global_step}: {metrics}")
                if ema is not None:
                    ema.restore(module.parameters())
            if accelerator.is_main_process and (global_step % args.checkpointing_steps == 0 or done):
                history.flush()  # the rows up to this checkpoint survive a kill
            if done:
                break
        epoch += 1

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(module)
        if ema is not None:
            ema.copy_to(final.parameters())
        pipe = DefusionPipeline(unet=final.unet, bridge=final.bridge, adapter=final.adapter, tokenizer=tokenizer,
                                scheduler=make_scheduler(args.prediction_type), diffusion_space=args.diffusion_space,
                                ground=args.ground, text_encoder=text_encoder, text_tokenizer=text_tok, **blind)  # fmt: skip
        pipe.save_pretrained(out / "pipeline")
        history.flush()
        (out / "run_config.json").write_text(json.dumps(loggable_config(args), indent=2))
    accelerator.end_training()
    return history


if __name__ == "__main__":
    main(parse_args())
