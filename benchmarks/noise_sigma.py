"""How well blind mode's noise estimators read the sigma of Gaussian noise, on training-pool images.

    python benchmarks/noise_sigma.py --data-root ../shared/data --set BSD400 --limit 100

Every image of ``--set`` (a training pool by default, so nothing here looks at a test set) gets 8-bit Gaussian
noise at each sigma of ``--sigmas`` (the registry's ``noise`` operator, seed ``crc32(stem/sigma)``), and each
estimator of ``defusion.noise_level.estimate_noise_sigma`` reads it back. Reported per sigma, on the
0-255 scale: the mean estimate, the mean signed error (bias), the mean absolute error and the largest
over-statement, which is what costs a Defusion restoration most (model card, instructed vs true sigma).
"""

from __future__ import annotations

import argparse
import time
import zlib
from pathlib import Path

import numpy as np

from defusion import degradations as D
from defusion.noise_level import estimate_noise_sigma
from defusion.images import load_image

METHODS = ("wavelet", "pca")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--set", default="BSD400")
    p.add_argument("--sigmas", default="5,10,15,25,35,50")
    p.add_argument("--limit", type=int, default=100, help="the first N images (sorted by name); 0: all")
    args = p.parse_args(argv)

    src = Path(args.data_root) / args.set / "gt"
    if not src.is_dir():
        raise FileNotFoundError(f"no images at {src}")
    files = sorted(f for f in src.iterdir() if f.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".tif"})
    files = files[: args.limit] if args.limit else files
    sigmas = [float(s) for s in args.sigmas.split(",")]
    est = {m: {s: [] for s in sigmas} for m in METHODS}
    secs = {m: 0.0 for m in METHODS}
    for f in files:
        clean = load_image(f)
        for s in sigmas:
            noisy = D.GaussianNoise(sigma=s).apply(clean, np.random.default_rng(zlib.crc32(f"{f.stem}/{s}".encode())))
            for m in METHODS:
                t = time.perf_counter()
                est[m][s].append(255.0 * estimate_noise_sigma(noisy, method=m))
                secs[m] += time.perf_counter() - t

    n = len(files)
    print(f"{args.set}, {n} images, 8-bit Gaussian noise; estimates on the 0-255 scale\n")
    print("| sigma | estimator | mean | bias | mean abs error | largest over-statement |\n|---:|---|---:|---:|---:|---:|")
    for s in sigmas:
        for m in METHODS:
            e = np.asarray(est[m][s])
            print(f"| {s:g} | {m} | {e.mean():.2f} | {e.mean() - s:+.2f} | {np.abs(e - s).mean():.2f} | {(e - s).max():+.2f} |")
    print("\n" + ", ".join(f"{m}: {1000 * secs[m] / (n * len(sigmas)):.0f} ms per image" for m in METHODS))


if __name__ == "__main__":
    main()
