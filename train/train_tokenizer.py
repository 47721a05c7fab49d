#!/usr/bin/env python
"""Train the degradation tokenizer (a VQGAN on visual instructions), Defusion Sec. 3.1.

    accelerate launch train/train_tokenizer.py --preset small --output_dir runs/tokenizer-small \
        --max_train_steps 20000 --train_batch_size 8 --learning_rate 4.5e-6

Data are made on the fly: a ground from the pool, random degradation specs (single and mixed) -> the
instruction; with p = 0.1 the clean ground instead (the paper). Random 224 crop and horizontal flip in
training, centre crop at validation. Loss: MSE + LPIPS (lambda 1) + VQ (commitment beta on the commitment
term) + 0.8 x adaptive-weighted hinge GAN on a PatchGAN, from --disc_start. Checkpoints are accelerate states
with ``save_pretrained`` subfolders (tokenizer/, discriminator/, tokenizer_ema/); ``--resume_from_checkpoint
latest`` continues a run; the final model goes to ``output_dir/tokenizer``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from defusion.data import InstructionDataset
from defusion.losses import VQGANLoss, build_lpips
from defusion.models import DegradationTokenizer, PatchGANDiscriminator
from defusion.training_utils import (
    TrainHistory,
    loggable_config,
    require_batches,
    resolve_resume,
    save_checkpoint,
    step_of,
    tensor_to_image,
)
from defusion.images import make_grid, save_png

logger = get_logger(__name__)


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--pretrained_model_name_or_path", default=None, help="start from a saved tokenizer folder")
    p.add_argument("--output_dir", default="runs/tokenizer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=None, help="crop size (default: the preset's input size)")
    p.add_argument("--num_samples", type=int, default=None, help="dataset length (default: steps x batch)")
    p.add_argument("--train_batch_size", type=int, default=8)
    p.add_argument("--max_train_steps", type=int, default=20000)
    p.add_argument("--max_train_minutes", type=float, default=None, help="stop (with a checkpoint) after this wall time")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--learning_rate", type=float, default=4.5e-6)
    p.add_argument("--disc_learning_rate", type=float, default=None, help="default: --learning_rate")
    p.add_argument("--adam_beta1", type=float, default=0.5)
    p.add_argument("--adam_beta2", type=float, default=0.9)
    p.add_argument("--lr_scheduler", default="constant")
    p.add_argument("--lr_warmup_steps", type=int, default=0)
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--perceptual_weight", type=float, default=1.0)
    p.add_argument("--lpips_trunk", default=None, help="torchvision VGG16/AlexNet weights for LPIPS (local file)")
    p.add_argument("--lpips_net", default="vgg", choices=["vgg", "alex", "squeeze"])
    p.add_argument("--disc_weight", type=float, default=0.8)
    p.add_argument("--disc_start", type=int, default=10000)
    p.add_argument("--p_clean", type=float, default=0.1)
    p.add_argument("--dead_code_restart_steps", type=int, default=200, help="0 disables dead-code restarts")
    p.add_argument("--use_ema", action="store_true")
    p.add_argument("--ema_decay", type=float, default=0.999)
    p.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--report_to", default="tensorboard", help="tensorboard, wandb, all or none")
    p.add_argument("--logging_dir", default="logs")
    p.add_argument("--checkpointing_steps", type=int, default=1000)
    p.add_argument("--checkpoints_total_limit", type=int, default=3)
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    p.add_argument("--validation_steps", type=int, default=500)
    p.add_argument("--num_validation_images", type=int, default=8)
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--cpu", action="store_true", help="force CPU even if a GPU is present")
    args = p.parse_args(input_args)
    if args.disc_learning_rate is None:
        args.disc_learning_rate = args.learning_rate
    return args


def build_models(args):
    if args.pretrained_model_name_or_path:
        tok = DegradationTokenizer.from_pretrained(args.pretrained_model_name_or_path)
    else:
        tok = DegradationTokenizer.from_preset(args.preset)
    disc = PatchGANDiscriminator(num_layers=2 if args.preset == "tiny" else 3, base_channels=8 if args.preset == "tiny" else 64)
    return tok, disc


@torch.no_grad()
def validate(tokenizer, val_batch, out_dir: Path, step: int, accelerator):
    tokenizer.eval()
    x = val_batch["pixel_values"].to(accelerator.device)
    with accelerator.autocast():
        rec, _, idx = tokenizer(x)
    mse = torch.mean((rec.float().clamp(-1, 1) - x) ** 2).item()
    stats = DegradationTokenizer.usage_stats(idx, tokenizer.config.num_vq_embeddings)
    images, labels = [], []
    for i in range(x.shape[0]):
        spec = json.loads(val_batch["spec"][i])
        name = "clean" if spec is None else "+".join(s["name"] for s in spec.get("steps", [spec]))
        images += [tensor_to_image(x[i]), tensor_to_image(rec[i])]
        labels += [name, "reconstruction"]
    save_png(make_grid(images, labels, cols=4), out_dir / "validation" / f"step_{step:07d}.png")
    tokenizer.train()
    return {"val_mse": mse, "val_perplexity": stats["perplexity"], "val_codes_used": stats["codes_used"]}


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
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)

    tokenizer, disc = build_models(args)
    size = args.resolution or tokenizer.config.input_size
    lpips_model, lpips_info = (None, {"lpips_trunk": "disabled"})
    if args.perceptual_weight > 0:
        lpips_model, lpips_info = build_lpips(args.lpips_net, args.lpips_trunk, allow_random_trunk=True)
        lpips_model.to(accelerator.device)
    args.lpips = lpips_info.get("lpips_trunk")  # logged with the run config: says if the trunk was random
    loss_fn = VQGANLoss(lpips_model, args.perceptual_weight, args.disc_weight, args.disc_start)

    ema = None
    if args.use_ema:
        ema = EMAModel(tokenizer.parameters(), decay=args.ema_decay, model_cls=DegradationTokenizer, model_config=tokenizer.config)

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for m in models:
                unwrapped = accelerator.unwrap_model(m)
                sub = "tokenizer" if isinstance(unwrapped, DegradationTokenizer) else "discriminator"
                unwrapped.save_pretrained(os.path.join(output_dir, sub))
            if ema is not None:
                ema.save_pretrained(os.path.join(output_dir, "tokenizer_ema"))
        while weights:
            weights.pop()

    def load_hook(models, input_dir):
        if ema is not None:
            loaded = EMAModel.from_pretrained(os.path.join(input_dir, "tokenizer_ema"), DegradationTokenizer)
            ema.load_state_dict(loaded.state_dict())
            ema.to(accelerator.device)
        while models:
            m = models.pop()
            unwrapped = accelerator.unwrap_model(m)
            cls, sub = (DegradationTokenizer, "tokenizer") if isinstance(unwrapped, DegradationTokenizer) else (PatchGANDiscriminator, "discriminator")
            loaded = cls.from_pretrained(input_dir, subfolder=sub)
            unwrapped.register_to_config(**loaded.config)
            unwrapped.load_state_dict(loaded.state_dict())
            del loaded

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    opt_g = torch.optim.Adam(tokenizer.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.disc_learning_rate, betas=(args.adam_beta1, args.adam_beta2))
    num_samples = args.num_samples or args.max_train_steps * args.train_batch_size * args.gradient_accumulation_steps
    with accelerator.main_process_first():
        train_ds = InstructionDataset(num_samples, size=size, margin=max(8, size // 7), train=True, seed=args.seed, p_clean=args.p_clean)
        val_ds = InstructionDataset(args.num_validation_images, size=size, margin=max(8, size // 7), train=False, seed=args.seed + 10_000, p_clean=0.0)
    require_batches(train_ds, args.train_batch_size, accelerator.num_processes)
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=args.train_batch_size, shuffle=False, num_workers=args.dataloader_num_workers, drop_last=True
    )
    val_batch = next(iter(torch.utils.data.DataLoader(val_ds, batch_size=len(val_ds))))
    sched_g = get_scheduler(args.lr_scheduler, opt_g, num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                            num_training_steps=args.max_train_steps * accelerator.num_processes)  # fmt: skip
    tokenizer, disc, opt_g, opt_d, loader, sched_g = accelerator.prepare(tokenizer, disc, opt_g, opt_d, loader, sched_g)
    if ema is not None:
        ema.to(accelerator.device)

    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers("defusion-tokenizer", config=loggable_config(args))

    global_step = 0
    ckpt = resolve_resume(out, args.resume_from_checkpoint, warn=logger.warning)
    if args.resume_from_checkpoint and ckpt is None:
        logger.info("no checkpoint to resume from; starting a new run")
    if ckpt is not None:
        logger.info(f"resuming from {ckpt}")
        accelerator.load_state(str(ckpt))
        global_step = step_of(ckpt)

    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    skip = global_step * args.gradient_accumulation_steps
    active_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
    unwrapped_tok = accelerator.unwrap_model(tokenizer)
    restart_gen = torch.Generator().manual_seed(args.seed)
    bar = tqdm(total=args.max_train_steps, initial=global_step, disable=not accelerator.is_local_main_process, desc="tokenizer")
    history = TrainHistory(out / "train_history.jsonl")
    deadline = time.time() + 60 * args.max_train_minutes if args.max_train_minutes else None
    out_of_time = False
    while global_step < args.max_train_steps and not out_of_time:
        for batch in active_loader:
            x = batch["pixel_values"]
            with accelerator.accumulate(tokenizer, disc):
                with accelerator.autocast():
                    rec, vq_loss, idx = tokenizer(x)
                    g_loss, logs = loss_fn.generator_loss(x, rec, vq_loss, disc, unwrapped_tok.last_layer, global_step)
                accelerator.backward(g_loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(tokenizer.parameters(), args.max_grad_norm)
                opt_g.step()
                sched_g.step()
                opt_g.zero_grad(set_to_none=True)
                with accelerator.autocast():
                    d_loss, d_logs = loss_fn.discriminator_loss(x, rec, disc, global_step)
                if d_loss is not None:
                    accelerator.backward(d_loss)
                    opt_d.step()
                    opt_d.zero_grad(set_to_none=True)
                    logs.update(d_logs)
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            bar.update(1)
            if ema is not None:
                ema.step(tokenizer.parameters())
            if args.dead_code_restart_steps and global_step % args.dead_code_restart_steps == 0:
                with torch.no_grad():
                    latents = unwrapped_tok.vq.encode(x).latents
                n = unwrapped_tok.restart_dead_codes(accelerator.gather(latents), generator=restart_gen)
                logs["codes_restarted"] = torch.tensor(float(n))
            stats = DegradationTokenizer.usage_stats(idx, unwrapped_tok.config.num_vq_embeddings)
            scalars = {k: float(v) for k, v in logs.items()} | {"perplexity": stats["perplexity"], "lr": sched_g.get_last_lr()[0]}
            history.append({"step": global_step, **scalars})
            accelerator.log(scalars, step=global_step)
            bar.set_postfix(mse=f"{scalars['mse']:.4f}", ppl=f"{stats['perplexity']:.0f}")
            if deadline is not None:
                out_of_time = bool(accelerator.gather(torch.tensor([time.time() > deadline], device=accelerator.device)).any())
            if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps or out_of_time:
                save_checkpoint(accelerator, out, global_step, args.checkpoints_total_limit)
            if accelerator.is_main_process and args.validation_steps and global_step % args.validation_steps == 0:
                if ema is not None:
                    ema.store(tokenizer.parameters())
                    ema.copy_to(tokenizer.parameters())
                accelerator.log(validate(unwrapped_tok, val_batch, out, global_step, accelerator), step=global_step)
                if ema is not None:
                    ema.restore(tokenizer.parameters())
            if accelerator.is_main_process and (global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps
                                                or out_of_time):  # fmt: skip
                history.flush()  # the rows up to this checkpoint survive a kill
            if global_step >= args.max_train_steps or out_of_time:
                break
        active_loader = loader  # later epochs start from the first batch
        if steps_per_epoch == 0:
            raise ValueError("the dataset is smaller than one batch")

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(tokenizer)
        if ema is not None:
            ema.copy_to(final.parameters())
        final.save_pretrained(out / "tokenizer")
        history.flush()
        (out / "run_config.json").write_text(json.dumps(loggable_config(args), indent=2))
    accelerator.end_training()
    return history


if __name__ == "__main__":
    main(parse_args())
