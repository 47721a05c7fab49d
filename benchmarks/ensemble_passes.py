"""How much each self-ensemble size buys: PSNR and time for 1, 2, 4, 8, 16 and 32 passes.

    python benchmarks/ensemble_passes.py --model defusion-small --data-root ../shared/data --passes 1,2,4,8,16
    python benchmarks/ensemble_passes.py --steps 1,4 --passes 1,4 --noise noise25,rain,haze,low_light,jpeg10

``--steps`` runs every ensemble size at each number of DDIM steps, so "N passes of S steps" can be compared at
equal U-Net evaluations (N x S): one pass of 4 steps costs what 4 passes of 1 step cost.

``self_ensemble=N`` averages N restorations of the image rotated/flipped and moved by one-pixel grid shifts
(``defusion.ensemble.ensemble_plan``). By default the task is Gaussian noise at sigma 25 on the last ``--holdout``
BSD400 images: the images the training scripts hold out for validation, so choosing an ensemble size here
never looks at a test set. ``--tasks`` evaluates test-set tasks instead (e.g. ``CBSD68:noise25 --limit 5``).
Every run goes through ``defusion.eval.evaluate`` (its conventions: centre crop to a multiple of 16, per-image
seeds), with the given ``--instruction`` (``auto``: blind). Time is the wall time of the whole run, also as a
ratio to one pass.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from defusion.eval import evaluate
from defusion.eval.methods import PipelineMethod
from defusion.weights import resolve


def holdout_root(data_root: str, n: int, out: Path) -> Path:
    """A data root whose ``BSD400val/gt`` links to the last ``n`` BSD400 images (sorted by name)."""
    if n < 1:  # images[-0:] would be every image, the training ones included
        raise ValueError(f"--holdout must be at least 1, got {n}")
    src = Path(data_root) / "BSD400" / "gt"
    images = sorted(p for p in src.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    if len(images) < n:
        raise FileNotFoundError(f"{src} has {len(images)} images; --holdout needs {n}")
    gt = out / "BSD400val" / "gt"
    gt.mkdir(parents=True)
    for p in images[-n:]:
        (gt / p.name).symlink_to(p.resolve())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="defusion-small")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--passes", default="1,2,4,8,16")
    p.add_argument("--instruction", default="noise", help="instruction for every image; auto: blind")
    p.add_argument("--holdout", type=int, default=8, help="validation: the last N BSD400 images (when no --tasks)")
    p.add_argument("--noise", default="noise25", help="degradation(s) of the validation task, comma-separated")
    p.add_argument("--steps", default="4", help="DDIM steps, comma-separated (each ensemble size at each)")
    p.add_argument("--tasks", default="", help="comma-separated test tasks instead of the validation task")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)

    passes = [int(n) for n in args.passes.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    if any(n < 1 for n in passes + steps):
        raise SystemExit("--passes and --steps must be positive integers")
    with tempfile.TemporaryDirectory() as tmp:
        if args.tasks:
            root, tasks = args.data_root, [t.strip() for t in args.tasks.split(",") if t.strip()]
        else:
            kinds = [k.strip() for k in args.noise.split(",") if k.strip()]
            root = holdout_root(args.data_root, args.holdout, Path(tmp))
            tasks = [f"BSD400val:{k}" for k in kinds]
        rows, base = {}, {}
        for s in steps:
            for n in passes:
                method = PipelineMethod(resolve(args.model), instruction=args.instruction, steps=s, self_ensemble=n)
                t0 = time.perf_counter()
                res = evaluate(method, tasks, root, limit=args.limit, lpips=False, method_name=f"{n}x{s}",
                               progress=False)  # fmt: skip
                seconds = time.perf_counter() - t0
                for task in tasks:
                    if task not in res["tasks"]:
                        raise FileNotFoundError(res["skipped"].get(task, f"no data for {task}"))
                    rows.setdefault(task, []).append((n, s, res["tasks"][task]["psnr"], seconds))
                    base.setdefault(task, res["tasks"][task]["psnr"])
                print(f"{n} passes x {s} steps: " + ", ".join(f"{t} {res['tasks'][t]['psnr']:.2f} dB" for t in tasks)
                      + f" ({seconds:.0f} s)", flush=True)  # fmt: skip

    what = f"first {args.limit}" if args.limit else "all"
    print(f"\n{args.model}, instruction {args.instruction!r}, {what} images (PSNR dB; time: the whole run)\n")
    print("| task | passes | steps | U-Net evaluations | PSNR | vs first row | time (x first row) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for task, rs in rows.items():
        for n, s, psnr, seconds in rs:
            print(f"| {task} | {n} | {s} | {n * s} | {psnr:.2f} | {psnr - base[task]:+.2f} | {seconds / rs[0][3]:.1f} |")


if __name__ == "__main__":
    main()
