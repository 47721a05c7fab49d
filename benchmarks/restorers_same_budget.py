"""Restormer, PromptIR, DFPIR, Perceive-IR and ClearAIR (``small`` presets) trained for the same budget, side by side.

    python benchmarks/restorers_same_budget.py --clean_dir ../shared/data/BSD400/gt --steps 300 --out runs/same-budget

Each model: ``train/train_restorer.py`` with identical data (BSD400 minus its last 8 images, synthetic noise /
rain / haze with repeat factors 3 / 1 / 1, 128 px crops, batch 8), seed and number of steps, its paper's
optimiser, L1 loss. Reported: held-out PSNR per kind on the last 8 BSD400 images (never a test set), wall time,
and CPU latency of the whole pipeline call at 256 and 512 px (median of 3, this machine's threads; perception
modules included: DINOv2, the identifier, SLIC regions) as ratios to the fastest, with the peak resident memory
of that measuring process. Perceive-IR and ClearAIR use the offline perception fallbacks (tiny random DINOv2,
SLIC) and the identifier in ``--identifier`` (default: the shipped defusion-small's). ``--reuse`` keeps models
already trained in ``--out`` (with their recorded training minutes) and re-measures every latency in this run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from defusion.pipelines import RESTORERS, RestorerPipeline

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["restormer", "promptir", "dfpir", "perceive_ir", "clearair"]
IDENTIFIER = ROOT / "defusion" / "weights" / "defusion-small" / "identifier"


def measure(pipe_dir: str, size: int) -> dict:
    """Latency and peak memory in a fresh process, so one model's allocations do not count for the next."""
    code = f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import restorers_same_budget as b; " \
           f"print(json.dumps(b.latency({pipe_dir!r}, {size})))"  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def latency(pipe_dir: str, size: int) -> dict:
    pipe = RestorerPipeline.from_pretrained(pipe_dir)
    pipe.set_progress_bar_config(disable=True)
    img = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
    pipe(img, degradation="noise", output_type="np")
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        pipe(img, degradation="noise", output_type="np")
        ts.append(time.perf_counter() - t)
    return {"seconds": float(np.median(ts)), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean_dir", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default="runs/same-budget")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--preset", default="small")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--identifier", default=str(IDENTIFIER), help="trained identifier for ClearAIR's conditions")
    p.add_argument("--reuse", action="store_true", help="keep models already trained in --out")
    p.add_argument("extra", nargs="*", help="more train_restorer.py flags (after --)")
    args = p.parse_args(argv)
    old = {}
    if args.reuse and (Path(args.out) / "results.json").is_file():
        old = json.loads((Path(args.out) / "results.json").read_text())
    rows = {}
    for m in args.models.split(","):
        out = Path(args.out) / m
        extra = ["--identifier", args.identifier, "--region_cache", str(Path(args.out) / "regions")] if m == "clearair" else []
        cmd = [sys.executable, str(ROOT / "train" / "train_restorer.py"), "--model", m, "--preset", args.preset,
               "--clean_dirs", args.clean_dir, "--kinds", "noise,rain,haze", "--kind_repeats", "3,1,1",
               "--resolution", str(args.resolution), "--train_batch_size", str(args.batch), "--max_train_steps", str(args.steps),
               "--checkpointing_steps", str(args.steps), "--output_dir", str(out), *extra, *args.extra]  # fmt: skip
        if args.reuse and m in old and (out / "pipeline").is_dir():
            minutes = old[m]["minutes"]
        else:
            t = time.time()
            subprocess.run(cmd, check=True)
            minutes = (time.time() - t) / 60
        last = [json.loads(line) for line in open(out / "train_history.jsonl")][-1]
        m256, m512 = measure(str(out / "pipeline"), 256), measure(str(out / "pipeline"), 512)
        rows[m] = {"minutes": minutes, **last, "latency_256": m256["seconds"], "latency_512": m512["seconds"],
                   "peak_mb_512": m512["peak_mb"],
                   "params": sum(p.numel() for p in RESTORERS[m].from_preset(args.preset).parameters())}  # fmt: skip
    kinds = ["noise", "rain", "haze"]
    print(f"\n{args.preset} presets, {args.steps} steps of batch {args.batch} at {args.resolution} px each, torch threads = {torch.get_num_threads()}\n")
    print("| model | params | " + " | ".join(f"{k} in -> out" for k in kinds) + " | train min | 256 px s (x) | 512 px s (x) | peak MB (512) |")
    print("|---|---:|" + "---:|" * len(kinds) + "---:|---:|---:|---:|")
    f256 = min(r["latency_256"] for r in rows.values())
    f512 = min(r["latency_512"] for r in rows.values())
    for m, r in rows.items():
        cells = [f"{r[f'val_psnr_input/{k}']:.2f} -> {r[f'val_psnr/{k}']:.2f}" for k in kinds]
        print(f"| {m} | {r['params'] / 1e6:.2f}M | " + " | ".join(cells) + f" | {r['minutes']:.1f} | "
              f"{r['latency_256']:.2f} ({r['latency_256'] / f256:.1f}) | {r['latency_512']:.2f} ({r['latency_512'] / f512:.1f}) | "
              f"{r['peak_mb_512']:.0f} |")
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
