#!/usr/bin/env python
"""Train a regression restorer (Restormer, PromptIR, DFPIR) on the all-in-one mixture.

    accelerate launch train/train_restorer.py --model promptir --preset small \
        --clean_dirs ../shared/data/BSD400/gt --kinds noise,rain,haze --kind_repeats 3,1,1 \
        --output_dir runs/promptir-small

Data: clean folders degraded on the fly, one dataset per kind with its repeat factor (the papers' balancing,
e.g. noise x3), plus real pairs (``--paired DIR:DEGRADATION``). L1 loss on [-1, 1] images, gradient clipping,
optional EMA, checkpoints with ``save_pretrained`` (``restorer/``), ``--resume_from_checkpoint latest``,
validation PSNR per kind on held-out images (the last ``--val_holdout`` of the first folder). Optimiser defaults
follow each paper: PromptIR AdamW 2e-4 with linear warm-up and cosine; DFPIR Adam 1e-4 with cosine; Restormer
AdamW 3e-4 (wd 1e-4) with cosine. DFPIR gets each sample's degradation prompt code (``--clip_checkpoint`` for
CLIP, else the offline fallback). The final ``RestorerPipeline`` goes to ``output_dir/pipeline``.
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
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from defusion import degradations as D
from defusion.data import MixtureDataset, PairedFolderDataset, SyntheticDegradationDataset, list_images
from defusion.perception import DegradationPromptEncoder, prompt_for
from defusion.pipelines import RESTORERS, RestorerPipeline
from defusion.training_utils import load_ema, loggable_config, prune_checkpoints, resolve_resume, save_ema, step_of

OPTIMISERS = {  # (optimiser, lr, weight decay, warm-up share of the steps)
    "promptir": ("adamw", 2e-4, 1e-2, 0.1),
    "dfpir": ("adam", 1e-4, 0.0, 0.0),
    "restormer": ("adamw", 3e-4, 1e-4, 0.0),
}


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(RESTORERS))
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--pretrained_pipeline", default=None,
                   help="start from a saved RestorerPipeline (e.g. DFPIR's second stage: --resolution 192 --learning_rate 1e-5)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--clean_dirs", nargs="*", default=[])
    p.add_argument("--kinds", default="noise,rain,haze")
    p.add_argument("--kind_repeats", default=None, help="repeat factor per kind, e.g. 3,1,1 (default 1 each)")
    p.add_argument("--paired", nargs="*", default=[], help="DIR:DEGRADATION real pairs")
    p.add_argument("--paired_repeats", nargs="*", type=int, default=None)
    p.add_argument("--val_holdout", type=int, default=8)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--train_batch_size", type=int, default=8)
    p.add_argument("--max_train_steps", type=int, default=10000)
    p.add_argument("--max_train_minutes", type=float, default=None)
    p.add_argument("--learning_rate", type=float, default=None, help="default: the paper's for --model")
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--use_ema", action="store_true")
    p.add_argument("--ema_decay", type=float, default=0.999)
    p.add_argument("--clip_checkpoint", default=None, help="local open_clip ViT-B-32 weights for DFPIR prompts")
    p.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--checkpointing_steps", type=int, default=1000)
    p.add_argument("--checkpoints_total_limit", type=int, default=2)
    p.add_argument("--resume_from_checkpoint", default=None)
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true")
    args = p.parse_args(input_args)
    if not (args.clean_dirs or args.paired):
        p.error("give training data: --clean_dirs and/or --paired")
    return args


def build_data(args):
    kinds = [D.get(k).name for k in args.kinds.split(",") if k.strip()]
    reps = [int(r) for r in args.kind_repeats.split(",")] if args.kind_repeats else [1] * len(kinds)
    if len(reps) != len(kinds):
        raise ValueError("--kind_repeats needs one factor per kind")
    common = dict(crop=args.resolution, seed=args.seed, instruction=False)
    datasets, repeats, val = [], [], {}
    for i, d in enumerate(args.clean_dirs):
        files = list_images(d)
        if i == 0 and args.val_holdout:
            files, held = files[: -args.val_holdout], files[-args.val_holdout :]
            val = {k: SyntheticDegradationDataset(held, [k], train=False, **{**common, "seed": args.seed + 99}) for k in kinds}
        for k, r in zip(kinds, reps):
            datasets.append(SyntheticDegradationDataset(files, [k], **common))
            repeats.append(r)
    for j, spec in enumerate(args.paired):
        path, _, deg = spec.rpartition(":")
        datasets.append(PairedFolderDataset(path, deg, **common))
        repeats.append(args.paired_repeats[j] if args.paired_repeats else 1)
    return MixtureDataset(datasets, repeats), val


@torch.no_grad()
def validate(model, val, prompts, device) -> dict:
    model.eval()
    res = {}
    for kind, ds in val.items():
        scores = []
        for i in range(len(ds)):
            item = ds[i]
            x = item["lq"][None].to(device)
            kwargs = {"prompt_code": prompts([kind]).to(device)} if getattr(model, "needs_prompt", False) else {}
            out = model(x, **kwargs).clamp(-1, 1)
            mse = ((out - item["gt"][None].to(device)) / 2).pow(2).mean().item()
            scores.append(-10 * math.log10(mse + 1e-10))
        inp = [-10 * math.log10(((ds[i]["lq"] - ds[i]["gt"]) / 2).pow(2).mean().item() + 1e-10) for i in range(len(ds))]
        res[f"val_psnr/{kind}"] = float(np.mean(scores))
        res[f"val_psnr_input/{kind}"] = float(np.mean(inp))
    model.train()
    return res


def main(args):
    out = Path(args.output_dir)
    acc = Accelerator(mixed_precision=args.mixed_precision, cpu=args.cpu,
                      project_config=ProjectConfiguration(project_dir=str(out)))  # fmt: skip
    logging.basicConfig(level=logging.INFO)
    set_seed(args.seed)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    if args.pretrained_pipeline:
        model = RestorerPipeline.from_pretrained(args.pretrained_pipeline, dtype=torch.float32).restorer
        if not isinstance(model, RESTORERS[args.model]):
            raise ValueError(f"{args.pretrained_pipeline} holds a {type(model).__name__}, not {args.model}")
    else:
        model = RESTORERS[args.model].from_preset(args.preset)
    encoder = DegradationPromptEncoder(args.clip_checkpoint, dim=getattr(model.config, "prompt_dim", 512))

    def prompts(labels):
        return encoder.encode([prompt_for("+".join(lab) if isinstance(lab, list) else lab) for lab in labels])

    params = [p for p in model.parameters() if p.requires_grad]  # DFPIR's prompt projection is frozen
    ema = EMAModel(params, decay=args.ema_decay) if args.use_ema else None

    def save_hook(models, weights, output_dir):
        if acc.is_main_process:
            acc.unwrap_model(models[0]).save_pretrained(os.path.join(output_dir, "restorer"))
            if ema is not None:
                save_ema(ema, os.path.join(output_dir, "ema"))
        while weights:
            weights.pop()

    def load_hook(models, input_dir):
        m = acc.unwrap_model(models.pop())
        m.load_state_dict(type(m).from_pretrained(input_dir, subfolder="restorer").state_dict())
        if ema is not None:
            load_ema(ema, os.path.join(input_dir, "ema"))
            ema.to(acc.device)

    acc.register_save_state_pre_hook(save_hook)
    acc.register_load_state_pre_hook(load_hook)

    kind, lr, wd, warm = OPTIMISERS[args.model]
    lr = args.learning_rate or lr
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd) if kind == "adamw" else torch.optim.Adam(params, lr=lr)
    with acc.main_process_first():
        train_ds, val = build_data(args)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.dataloader_num_workers,
                                         generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    sched = get_scheduler("cosine", opt, num_warmup_steps=int(warm * args.max_train_steps),
                          num_training_steps=args.max_train_steps)  # fmt: skip
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    if ema is not None:
        ema.to(acc.device)
    step, epoch = 0, 0
    ckpt = resolve_resume(out, args.resume_from_checkpoint)
    if ckpt is not None:
        acc.load_state(str(ckpt))
        step = step_of(ckpt)
        epoch = step // max(1, len(loader))
    unwrapped = acc.unwrap_model(model)
    names = D.names()
    deadline = time.time() + 60 * args.max_train_minutes if args.max_train_minutes else None
    bar = tqdm(total=args.max_train_steps, initial=step, disable=not acc.is_local_main_process, desc=args.model)
    history, done = [], step >= args.max_train_steps
    skip = step % max(1, len(loader))
    while not done:
        train_ds.set_epoch(epoch)
        for batch in (acc.skip_first_batches(loader, skip) if skip else loader):
            kwargs = {}
            if getattr(unwrapped, "needs_prompt", False):
                labels = [[names[j] for j in torch.nonzero(row).flatten().tolist()] for row in batch["labels"]]
                kwargs["prompt_code"] = prompts(labels).to(acc.device)
            with acc.autocast():
                pred = model(batch["lq"], **kwargs)
            loss = F.l1_loss(pred.float(), batch["gt"].float())
            acc.backward(loss)
            acc.clip_grad_norm_(params, args.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if ema is not None:
                ema.step(params)
            step += 1
            bar.update(1)
            history.append({"step": step, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0]})
            done = step >= args.max_train_steps or (deadline is not None and time.time() > deadline)
            if step % args.checkpointing_steps == 0 or done:
                if acc.is_main_process:
                    prune_checkpoints(out, args.checkpoints_total_limit)
                acc.save_state(str(out / f"checkpoint-{step}"))
            if done:
                break
        skip = 0
        epoch += 1
    if acc.is_main_process:
        if ema is not None:
            ema.copy_to(params)
        if val:
            history[-1].update(validate(unwrapped, val, prompts, acc.device))
        RestorerPipeline(restorer=unwrapped).save_pretrained(out / "pipeline")
        with open(out / "train_history.jsonl", "a") as f:
            for row in history:
                f.write(json.dumps(row) + "\n")
        (out / "run_config.json").write_text(json.dumps(loggable_config(args), indent=2))
    return history


if __name__ == "__main__":
    main(parse_args())
