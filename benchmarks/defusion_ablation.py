"""Degradation-space vs image-space diffusion under the same budget (Defusion Table 5, "naive diffusion").

    python benchmarks/defusion_ablation.py --tokenizer TOKENIZER_DIR --clean_dir ../shared/data/BSD400/gt \
        --minutes 3 --out runs/ablation [-- extra train_defusion.py flags]

Trains the ``small`` Defusion twice with identical data (BSD400 with synthetic noise/rain/haze; the last 8
images held out), seeds and wall-clock budget, once with y0 = x_LQ - x_HQ and once with y0 = x_HQ, and prints
the held-out validation PSNR (input and restored, 4 DDIM steps) of each. Held-out BSD400 images, never a test set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--clean_dir", required=True)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("extra", nargs="*", help="more train_defusion.py flags (after --)")
    args = p.parse_args(argv)
    rows = {}
    for space in ("degradation", "image"):
        out = Path(args.out) / space
        cmd = [sys.executable, str(ROOT / "train" / "train_defusion.py"), "--preset", "small", "--tokenizer", args.tokenizer,
               "--clean_dirs", args.clean_dir, "--kinds", "noise,rain,haze", "--diffusion_space", space,
               "--max_train_minutes", str(args.minutes), "--max_train_steps", "100000", "--validation_steps", "0",
               "--checkpointing_steps", "100000", "--report_to", "none", "--output_dir", str(out), *args.extra]  # fmt: skip
        subprocess.run(cmd, check=True)
        hist = [json.loads(line) for line in open(out / "train_history.jsonl")]
        last = hist[-1]
        rows[space] = (last["step"], last.get("val_psnr_input"), last.get("val_psnr"))
    print(f"\n| diffusion space | steps in {args.minutes:g} min | held-out input PSNR | restored PSNR |")
    print("|---|---:|---:|---:|")
    for space, (steps, pin, pout) in rows.items():
        print(f"| {space} | {steps} | {pin:.2f} | {pout:.2f} |")
    (Path(args.out) / "ablation.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
