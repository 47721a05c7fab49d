#!/usr/bin/env python
"""Perceive-IR stage 1b: learn the terrible / mediocre / excellent prompts on a frozen CLIP.

    accelerate launch train/train_quality_prompts.py --triplets runs/triplets --clip path/to/open_clip \
        --output_dir runs/quality-prompts

Data: ``--triplets`` from ``train/make_quality_triplets.py`` (``<task>/{low,medium,high}/<name>.png``). Each
sample is one triplet with a synchronised random crop (``--crop``, 224; images with a shorter side are upscaled
bicubically first) and horizontal flip; labels low = 0, medium = 1, high = 2. Batches are task-balanced: a task
is drawn uniformly, then a triplet, with replacement. The last ``--val_holdout`` triplets of each task are held
out and report accuracy per class. Loss: 3-way cross-entropy on CLIP's logit scale times the cosine
similarities; AdamW (4e-5 for the prompts, as the reference) with cosine decay to 1e-6. Without ``--clip`` the
random stand-in CLIP is used and its image tower trains too (see ``defusion.perception.quality``); its learning
rate is ``--tower_learning_rate``.

Checkpoints (``checkpoint-N``: prompts, optimiser and scheduler state loaded with ``weights_only=True``, the
sampler's RNG state as JSON) every ``--checkpointing_steps``;
``--resume_from_checkpoint latest`` continues. The final prompts go to ``output_dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from defusion.data import list_images
from defusion.images import load_image
from defusion.perception import QualityPerceiver, quality_loss
from defusion.training_utils import loggable_config, publish_checkpoint, resolve_resume, step_of

TIERS = ("low", "medium", "high")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--triplets", required=True)
    p.add_argument("--clip", default=None, help="local open_clip folder or ViT-B-32 file; None: the random stand-in")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--train_batch_size", type=int, default=8, help="triplets per step (3x images)")
    p.add_argument("--max_train_steps", type=int, default=100000)
    p.add_argument("--max_train_minutes", type=float, default=None)
    p.add_argument("--learning_rate", type=float, default=4e-5)
    p.add_argument("--tower_learning_rate", type=float, default=1e-3, help="only for the random stand-in's image tower")
    p.add_argument("--min_learning_rate", type=float, default=1e-6)
    p.add_argument("--val_holdout", type=int, default=4)
    p.add_argument("--checkpointing_steps", type=int, default=1000)
    p.add_argument("--checkpoints_total_limit", type=int, default=2)
    p.add_argument("--resume_from_checkpoint", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true")
    return p.parse_args(argv)


def find_triplets(root: Path) -> dict[str, list[tuple[Path, Path, Path]]]:
    tasks = {}
    for task_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("_")):
        if not all((task_dir / t).is_dir() for t in TIERS):
            continue
        mids = {p.stem: p for p in list_images(task_dir / "medium")}
        highs = {p.stem: p for p in list_images(task_dir / "high")}
        rows = [(p, mids[p.stem], highs[p.stem]) for p in list_images(task_dir / "low") if p.stem in mids and p.stem in highs]
        if rows:
            tasks[task_dir.name] = rows
    if not tasks:
        raise FileNotFoundError(f"no <task>/low|medium|high triplets with matching names under {root}")
    return tasks


def triplet_tensors(paths, crop: int, rng: np.random.Generator | None) -> torch.Tensor:
    """(3, 3, crop, crop) in [-1, 1]: synchronised crop (random with ``rng``, else centre) and flip."""
    imgs = [torch.from_numpy(load_image(p)).permute(2, 0, 1) for p in paths]
    if len({im.shape for im in imgs}) != 1:
        raise ValueError(f"triplet sizes differ: {[tuple(im.shape) for im in imgs]} ({paths[0].name})")
    x = torch.stack(imgs)
    h, w = x.shape[-2:]
    if min(h, w) < crop:
        s = crop / min(h, w)
        x = F.interpolate(x, size=(max(crop, round(h * s)), max(crop, round(w * s))), mode="bicubic", align_corners=False).clamp(0, 1)
        h, w = x.shape[-2:]
    top = int(rng.integers(0, h - crop + 1)) if rng is not None else (h - crop) // 2
    left = int(rng.integers(0, w - crop + 1)) if rng is not None else (w - crop) // 2
    x = x[..., top : top + crop, left : left + crop]
    if rng is not None and rng.random() < 0.5:
        x = x.flip(-1)
    return x * 2 - 1


@torch.no_grad()
def evaluate(perceiver, val, crop, device) -> dict:
    perceiver.eval()
    correct, total = np.zeros(3), np.zeros(3)
    for rows in val.values():
        for paths in rows:
            pred = perceiver.predict(triplet_tensors(paths, crop, None).to(device)).argmax(-1).cpu().numpy()
            correct += pred == np.arange(3)
            total += 1
    perceiver.train()
    acc = correct / np.maximum(total, 1)
    return {"val_accuracy": float(acc.mean()), **{f"val_accuracy/{c}": float(a) for c, a in zip(perceiver.classes, acc)}}


def main(args):
    out = Path(args.output_dir)
    acc = Accelerator(cpu=args.cpu)
    logging.basicConfig(level=logging.INFO)
    set_seed(args.seed)
    out.mkdir(parents=True, exist_ok=True)
    tasks = find_triplets(Path(args.triplets))
    train, val = {}, {}
    for t, rows in tasks.items():
        k = min(args.val_holdout, len(rows) - 1)
        train[t], val[t] = (rows[:-k], rows[-k:]) if k > 0 else (rows, [])
    perceiver = QualityPerceiver.from_clip(args.clip, device=str(acc.device))
    groups = [{"params": [perceiver.ctx], "lr": args.learning_rate}]
    if perceiver.train_image_tower:
        groups.append({"params": list(perceiver.clip.visual.parameters()), "lr": args.tower_learning_rate})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.max_train_steps, eta_min=args.min_learning_rate)
    step = 0
    ckpt = resolve_resume(out, args.resume_from_checkpoint)
    rng = np.random.default_rng(args.seed)
    if ckpt is not None:
        perceiver.load_prompts(ckpt)
        state = torch.load(ckpt / "training_state.pt", map_location="cpu", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = json.loads((ckpt / "rng_state.json").read_text())
        step = step_of(ckpt)
    perceiver.train()
    names = sorted(train)
    deadline = time.time() + 60 * args.max_train_minutes if args.max_train_minutes else None
    bar = tqdm(total=args.max_train_steps, initial=step, desc="quality prompts")
    history = []
    labels = torch.arange(3, device=acc.device).repeat(args.train_batch_size)
    while step < args.max_train_steps:
        batch = []
        for _ in range(args.train_batch_size):
            rows = train[names[int(rng.integers(len(names)))]]
            batch.append(triplet_tensors(rows[int(rng.integers(len(rows)))], args.crop, rng))
        x = torch.cat(batch).to(acc.device)
        loss = quality_loss(perceiver, x, labels)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        history.append({"step": step, "loss": loss.item()})
        bar.set_postfix(loss=history[-1]["loss"])
        done = step >= args.max_train_steps or (deadline is not None and time.time() > deadline)
        if step % args.checkpointing_steps == 0 or done:
            tmp = out / f".checkpoint-{step}.tmp"  # written whole, then published as checkpoint-{step}
            shutil.rmtree(tmp, ignore_errors=True)
            c = perceiver.save_prompts(tmp)
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, c / "training_state.pt")
            (c / "rng_state.json").write_text(json.dumps(rng.bit_generator.state))
            publish_checkpoint(c, out / f"checkpoint-{step}", args.checkpoints_total_limit)
        if done:
            break
    if any(val.values()):
        history[-1].update(evaluate(perceiver, val, args.crop, acc.device))
    perceiver.save_prompts(out)
    with open(out / "train_history.jsonl", "a") as f:
        for row in history:
            f.write(json.dumps(row) + "\n")
    (out / "run_config.json").write_text(json.dumps({**loggable_config(args), "clip_backend": perceiver.backend}, indent=2))
    return history


if __name__ == "__main__":
    main(parse_args())
