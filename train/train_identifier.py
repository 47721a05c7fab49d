#!/usr/bin/env python
"""Train the DegradationIdentifier (multi-label kind + severity) on clean images degraded by the registry.

    accelerate launch train/train_identifier.py --clean_dirs ../shared/data/BSD400/gt \
        ../shared/data/Train400_gray/gt --output_dir runs/identifier

Each sample: a native-resolution crop of a clean image, 0-3 kinds (10 % clean), each at its own severity
(uniform 0.1-1), applied in random order. ``--jitter rain=0.5`` widens the appearance of the named kinds beyond
what their severity maps to: every numeric parameter of a drawn spec is scaled by exp(N(0, 0.5)) (kept where the
operator accepts the value; the severity label stays), so light real rain, sparser and fainter than severity 0.1
draws, is in the training data. ``--pretrained`` fine-tunes a trained identifier (its config, thresholds
included, is kept: choose them again after). Loss: BCE on presence + MSE on the severity of present kinds.
Adam, cosine schedule, checkpoints + resume; reports held-out accuracy (exact kind set) and mean severity error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from defusion import degradations as D
from defusion.data import crop_pair, list_images
from defusion.images import load_image
from defusion.perception import DegradationIdentifier, identifier_loss
from defusion.training_utils import TrainHistory, require_batches, resolve_resume, save_checkpoint, step_of


def jitter_spec(spec: D.Degradation, rng: np.random.Generator, sigma: float) -> D.Degradation:
    """``spec`` with each numeric parameter scaled by exp(N(0, sigma)) (integers rounded), where the operator
    accepts the new value; flags, tuples and zeros stay."""
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value == 0:
            continue
        new = value * float(np.exp(rng.normal(0.0, sigma)))
        try:
            spec = dataclasses.replace(spec, **{field.name: int(round(new)) if isinstance(value, int) else new})
        except ValueError:
            pass
    return spec


def parse_jitter(text: str | None, kinds) -> dict[str, float]:
    """'rain=0.5,snow=0.3' -> {kind: sigma}, with the kinds checked against ``kinds``."""
    out = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        name, sep, value = (t.strip() for t in item.partition("="))
        try:
            sigma = float(value)
        except ValueError:
            sigma = None
        if not sep or name not in kinds or sigma is None:
            raise ValueError(f"--jitter takes KIND=SIGMA items with KIND in {list(kinds)}, got {item!r}")
        if not 0 <= sigma <= 2:
            raise ValueError(f"--jitter sigma must be in [0, 2], got {item!r}")
        out[name] = sigma
    return out


class IdentifierDataset(Dataset):
    def __init__(self, files, kinds, crop: int, seed: int, train: bool, p_clean: float = 0.1, max_mix: int = 3,
                 jitter: dict | None = None):  # fmt: skip
        self.files, self.kinds, self.crop, self.seed, self.train = files, kinds, crop, seed, train
        self.p_clean, self.max_mix, self.epoch, self.jitter = p_clean, max_mix, 0, dict(jitter or {})

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch if self.train else 0, i])
        (img,) = crop_pair([load_image(self.files[i])], self.crop, rng, self.train)
        presence, severity = np.zeros(len(self.kinds), np.float32), np.zeros(len(self.kinds), np.float32)
        if rng.random() >= self.p_clean:
            k = int(rng.integers(1, self.max_mix + 1))
            steps = []
            for j in rng.choice(len(self.kinds), size=k, replace=False):
                s = float(rng.uniform(0.1, 1.0))
                presence[j], severity[j] = 1.0, s
                spec = D.get(self.kinds[j]).sample(rng, s)
                if self.kinds[j] in self.jitter:
                    spec = jitter_spec(spec, rng, self.jitter[self.kinds[j]])
                steps.append(spec)
            img = D.Compose(steps).apply(img, rng)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1) * 2 - 1
        return x, torch.from_numpy(presence), torch.from_numpy(severity)


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean_dirs", nargs="+", required=True)
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--pretrained", default=None, help="a trained identifier folder to fine-tune (instead of --preset)")
    p.add_argument("--jitter", default=None, help="KIND=SIGMA,...: wider appearance of these kinds in training")
    p.add_argument("--output_dir", default="runs/identifier")
    p.add_argument("--val_holdout", type=int, default=20, help="last N images of the first folder, for validation")
    p.add_argument("--train_batch_size", type=int, default=32)
    p.add_argument("--max_train_steps", type=int, default=5000)
    p.add_argument("--max_train_minutes", type=float, default=None)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--checkpointing_steps", type=int, default=1000)
    p.add_argument("--checkpoints_total_limit", type=int, default=2)
    p.add_argument("--resume_from_checkpoint", default=None)
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true")
    return p.parse_args(input_args)


@torch.no_grad()
def evaluate(model, loader, device):
    model.eval()
    exact, sev_err, n = 0, [], 0
    for x, presence, severity in loader:
        logits, sev = model(x.to(device))
        pred = (torch.sigmoid(logits) >= model.config.threshold).float().cpu()
        exact += int((pred == presence).all(dim=1).sum())
        n += x.shape[0]
        mask = presence > 0
        if mask.any():
            sev_err.append((sev.float().cpu()[mask] - severity[mask]).abs().mean().item())
    model.train()
    return {"val_exact_set_accuracy": exact / max(1, n), "val_severity_abs_error": float(np.mean(sev_err)) if sev_err else None}


def main(args):
    out = Path(args.output_dir)
    acc = Accelerator(mixed_precision=args.mixed_precision, cpu=args.cpu)
    set_seed(args.seed)
    files = list_images(args.clean_dirs[0])
    val_files, train_files = files[-args.val_holdout :] if args.val_holdout else [], files[: -args.val_holdout or None]
    for d in args.clean_dirs[1:]:
        train_files += list_images(d)
    if args.pretrained:
        model = DegradationIdentifier.from_pretrained(args.pretrained)
    else:
        model = DegradationIdentifier.from_preset(args.preset)
    kinds, crop = model.kinds, model.config.crop
    train_ds = IdentifierDataset(train_files, kinds, crop, args.seed, True, jitter=parse_jitter(args.jitter, kinds))
    require_batches(train_ds, args.train_batch_size, acc.num_processes)
    loader = DataLoader(train_ds, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                        num_workers=args.dataloader_num_workers, generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    val_loader = None
    if val_files:  # each held-out image 4 times with different degradations
        val_loader = DataLoader(IdentifierDataset(val_files * 4, kinds, crop, args.seed + 1, False), batch_size=64,
                                num_workers=args.dataloader_num_workers)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    sched = get_scheduler("cosine", opt, num_warmup_steps=100, num_training_steps=args.max_train_steps)
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    step = 0
    ckpt = resolve_resume(out, args.resume_from_checkpoint)
    if ckpt is not None:
        acc.load_state(str(ckpt))
        step = step_of(ckpt)
    deadline = time.time() + 60 * args.max_train_minutes if args.max_train_minutes else None
    bar = tqdm(total=args.max_train_steps, initial=step, disable=not acc.is_local_main_process, desc="identifier")
    history, epoch, done = TrainHistory(out / "train_history.jsonl"), 0, step >= args.max_train_steps
    while not done:
        train_ds.epoch = epoch
        for x, presence, severity in loader:
            with acc.autocast():
                logits, sev = model(x)
            loss, logs = identifier_loss(logits.float(), sev.float(), presence, severity)
            acc.backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            history.append({"step": step, "loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}})
            done = step >= args.max_train_steps or (deadline is not None and time.time() > deadline)
            if step % args.checkpointing_steps == 0 or done:
                save_checkpoint(acc, out, step, args.checkpoints_total_limit)
                if acc.is_main_process and not done:  # the last rows are written after the final evaluation
                    history.flush()
            if done:
                break
        epoch += 1
    if acc.is_main_process:
        final = acc.unwrap_model(model)
        metrics = evaluate(final, val_loader, acc.device) if val_loader is not None else {}
        if history:  # no step run (``--max_train_steps 0``, or resumed at the end): only the evaluation
            history[-1].update(metrics)
        final.save_pretrained(out / "identifier")
        (out / "metrics.json").write_text(json.dumps({"steps": step, **metrics}, indent=2))
        history.flush()
        print(json.dumps({"steps": step, **metrics}))
    return history


if __name__ == "__main__":
    main(parse_args())
