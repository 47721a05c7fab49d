"""Noisy photos saved as JPEG: what blind mode reads and what it could gain, on the training pool.

    python benchmarks/jpeg_noise.py --out benchmarks/results/jpeg_noise      # ~4 minutes on 2 CPU cores

For every sigma (AWGN on 8-bit images) and JPEG quality (PIL, its default 4:2:0 chroma subsampling; "none" = PNG),
on 256 x 256 crops of BSD400 images (a training pool: this measures, it tunes nothing on a test set):

* the patch-PCA sigma the blind pipeline reads (``estimate_noise_sigma(method="pca")``, all three channels) and
  the same estimator on the luma channel alone (divided by 0.668, the luma share of i.i.d. channel noise);
* what the identifier reports (kinds joined by "+", counted over the images);
* PSNR of the input, of the blind restore and of restores told "noise" at 0.4 / 0.6 / 0.8 / 1.0 x the true sigma
  (one view, ``self_ensemble=1``, so the runs stay short; the default sampler adds its ensemble gain to all alike).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from defusion import degradations as D
from defusion.images import load_image
from defusion.metrics import psnr
from defusion.noise_level import estimate_noise_sigma

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
FACTORS = (0.4, 0.6, 0.8, 1.0)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--model", default="default")
    p.add_argument("--images", type=int, default=8, help="BSD400 images (every 50th from the 6th)")
    p.add_argument("--sigmas", default="15,25,50")
    p.add_argument("--qualities", default="none,90,75")
    p.add_argument("--out", default=None, help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    import torch

    from defusion.pipelines import DefusionPipeline

    files = sorted((Path(args.data_root) / "BSD400" / "gt").glob("*"))[5::50][: args.images]
    if not files:
        p.error(f"no BSD400 images under {args.data_root}/BSD400/gt")
    pipe = DefusionPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)

    def restore(x, instruction):
        out = pipe(x, instruction=instruction, output_type="np", self_ensemble=1, generator=torch.Generator().manual_seed(0))
        return out.images[0]

    rows = []
    for sigma in (int(s) for s in args.sigmas.split(",")):
        for q in args.qualities.split(","):
            per, found = [], {}
            for i, f in enumerate(files):
                clean = load_image(f)[:256, :256]
                x = D.GaussianNoise(sigma=sigma).apply(clean, np.random.default_rng(i))
                if q != "none":
                    x = jpeg(x, int(q))
                kinds = "+".join(k for k, _, _ in pipe.identifier.identify(x)) or "none"
                found[kinds] = found.get(kinds, 0) + 1
                told = [psnr(restore(x, f"noise{max(1, round(k * sigma))}"), clean) for k in FACTORS]
                per.append([255 * estimate_noise_sigma(x, method="pca"), 255 * _luma_pca(x) / 0.668,
                            psnr(x, clean), psnr(restore(x, "auto"), clean), *told])  # fmt: skip
            m = np.mean(per, axis=0)
            row = {"sigma": sigma, "jpeg_quality": q, "images": len(files), "pca_sigma": m[0], "luma_pca_sigma": m[1],
                   "identifier": found, "input_psnr": m[2], "blind_psnr": m[3],
                   "told_psnr": {f"{k}x": v for k, v in zip(FACTORS, m[4:])}}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [
        f"# Noisy photos saved as JPEG ({len(files)} BSD400 crops, 256 px, one view)",
        "",
        f"`python benchmarks/jpeg_noise.py --images {args.images} --sigmas {args.sigmas} --qualities {args.qualities}`",
        "",
        "| sigma | JPEG q | PCA sigma (RGB) | PCA sigma (luma / 0.668) | identifier | input | blind | "
        + " | ".join(f"told {k} sigma" for k in FACTORS) + " |",
        "|---:|---:|---:|---:|---|---:|---:|" + "---:|" * len(FACTORS),
    ]
    for r in rows:
        ident = ", ".join(f"{k} {n}" for k, n in sorted(r["identifier"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {r['sigma']} | {r['jpeg_quality']} | {r['pca_sigma']:.1f} | {r['luma_pca_sigma']:.1f} | {ident} | "
                     f"{r['input_psnr']:.2f} | {r['blind_psnr']:.2f} | "
                     + " | ".join(f"{v:.2f}" for v in r["told_psnr"].values()) + " |")  # fmt: skip
    md = "\n".join(lines) + "\n"
    print(md)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.json").write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2))
        Path(f"{args.out}.md").write_text(md)


def _luma_pca(x: np.ndarray) -> float:
    """The patch-PCA estimate on the luma channel alone (the estimator's grey path would switch to wavelets)."""
    from defusion.noise_level import _pca_noise_sigma

    return _pca_noise_sigma((x @ LUMA)[..., None])


if __name__ == "__main__":
    main()
