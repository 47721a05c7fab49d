"""Restormer, PromptIR and DFPIR (``small`` presets) trained for the same budget, side by side.

    python benchmarks/restorers_same_budget.py --clean_dir ../shared/data/BSD400/gt --steps 300 --out runs/same-budget

Each model: ``train/train_restorer.py`` with identical data (BSD400 minus its last 8 images, synthetic noise /
rain / haze with repeat factors 3 / 1 / 1, 128 px crops, batch 8), seed and number of steps, its paper's
optimiser, L1 loss. Reported: held-out PSNR per kind on the last 8 BSD400 images (never a test set), wall time,
and CPU latency of one forward at 256 and 512 px (median of 3, this machine's threads) as ratios to the fastest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from defusion.pipelines import RESTORERS, RestorerPipeline

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["restormer", "promptir", "dfpir"]


def latency(pipe_dir: str, size: int) -> float:
    pipe = RestorerPipeline.from_pretrained(pipe_dir)
    pipe.set_progress_bar_config(disable=True)
    img = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
    pipe(img, degradation="noise", output_type="np")
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        pipe(img, degradation="noise", output_type="np")
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean_dir", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default="runs/same-budget")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--preset", default="small")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("extra", nargs="*", help="more train_restorer.py flags (after --)")
    args = p.parse_args(argv)
    rows = {}
    for m in args.models.split(","):
        out = Path(args.out) / m
        cmd = [sys.executable, str(ROOT / "train" / "train_restorer.py"), "--model", m, "--preset", args.preset,
               "--clean_dirs", args.clean_dir, "--kinds", "noise,rain,haze", "--kind_repeats", "3,1,1",
               "--resolution", str(args.resolution), "--train_batch_size", str(args.batch), "--max_train_steps", str(args.steps),
               "--checkpointing_steps", str(args.steps), "--output_dir", str(out), *args.extra]  # fmt: skip
        t = time.time()
        subprocess.run(cmd, check=True)
        last = [json.loads(line) for line in open(out / "train_history.jsonl")][-1]
        rows[m] = {"minutes": (time.time() - t) / 60, **last,
                   "latency_256": latency(str(out / "pipeline"), 256), "latency_512": latency(str(out / "pipeline"), 512),
                   "params": sum(p.numel() for p in RESTORERS[m].from_preset(args.preset).parameters())}  # fmt: skip
    kinds = ["noise", "rain", "haze"]
    print(f"\n{args.preset} presets, {args.steps} steps of batch {args.batch} at {args.resolution} px each, torch threads = {torch.get_num_threads()}\n")
    print("| model | params | " + " | ".join(f"{k} in -> out" for k in kinds) + " | train min | 256 px s (x) | 512 px s (x) |")
    print("|---|---:|" + "---:|" * len(kinds) + "---:|---:|---:|")
    f256 = min(r["latency_256"] for r in rows.values())
    f512 = min(r["latency_512"] for r in rows.values())
    for m, r in rows.items():
        cells = [f"{r[f'val_psnr_input/{k}']:.2f} -> {r[f'val_psnr/{k}']:.2f}" for k in kinds]
        print(f"| {m} | {r['params'] / 1e6:.2f}M | " + " | ".join(cells) + f" | {r['minutes']:.1f} | "
              f"{r['latency_256']:.2f} ({r['latency_256'] / f256:.1f}) | {r['latency_512']:.2f} ({r['latency_512'] / f512:.1f}) |")
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
