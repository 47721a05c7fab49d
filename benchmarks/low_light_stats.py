"""How real dark photos differ from the synthetic ``low_light`` degradation: brightness, noise and colour cast.

    python benchmarks/low_light_stats.py [--data-root ../shared/data] [--real LOL_eval15] [--severities 0.5,1]

For every pair (the real set's ``lq``/``gt``; for the synthetic rows the held-out BSD400 colour images, the last
``--holdout``, degraded at each severity and rounded to 8 bits) it reports the mean brightness ratio lq / gt, the
noise left once the input is scaled to the target's mean (patch-PCA sigma, 8-bit units, beside the target's own)
and the input's channel balance against the target's (per-channel mean / grey mean, lq over gt). A model trained on
the synthetic rows sees the inputs those rows describe; where the real row differs, that is what training misses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from defusion import degradations as D
from defusion.images import load_image
from defusion.noise_level import estimate_noise_sigma


def pair_stats(lq: np.ndarray, gt: np.ndarray) -> dict:
    """Brightness ratio, gain-matched noise sigma (8-bit units) of lq and gt, channel balance lq / gt (RGB)."""
    if lq.shape != gt.shape or lq.ndim != 3 or lq.shape[-1] != 3:
        raise ValueError(f"needs two RGB images of one size, got {lq.shape} and {gt.shape}")
    g, q = gt.reshape(-1, 3).mean(0), lq.reshape(-1, 3).mean(0)
    matched = np.clip(lq * (g.mean() / max(q.mean(), 1e-4)), 0, 1)
    return {"brightness": q.mean() / max(g.mean(), 1e-4), "sigma_lq": 255 * estimate_noise_sigma(matched, "pca"),
            "sigma_gt": 255 * estimate_noise_sigma(gt, "pca"),
            "balance": (q / max(q.mean(), 1e-4)) / (g / max(g.mean(), 1e-4))}  # fmt: skip


def row(name: str, stats: list[dict]) -> str:
    if not stats:
        raise ValueError(f"{name}: no colour image pairs")
    m = {k: np.mean([s[k] for s in stats], axis=0) for k in stats[0]}
    bal = "/".join(f"{v:.3f}" for v in m["balance"])
    return f"| {name} | {len(stats)} | {m['brightness']:.3f} | {m['sigma_lq']:.1f} | {m['sigma_gt']:.1f} | {bal} |"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--real", default="LOL_eval15", help="a paired set under the data root with lq/ and gt/")
    p.add_argument("--severities", default="0.5,1")
    p.add_argument("--holdout", type=int, default=8)
    args = p.parse_args(argv)
    root = Path(args.data_root)
    lq_dir, gt_dir = root / args.real / "lq", root / args.real / "gt"
    if not lq_dir.is_dir() or not gt_dir.is_dir():
        raise SystemExit(f"{root / args.real} needs lq/ and gt/ folders")
    real = [pair_stats(load_image(f), load_image(gt_dir / f.name)) for f in sorted(lq_dir.iterdir())
            if (gt_dir / f.name).is_file()]  # fmt: skip
    clean = [load_image(f) for f in sorted((root / "BSD400" / "gt").iterdir())[-args.holdout:]]
    clean = [c for c in clean if c.ndim == 3 and c.shape[-1] == 3]
    lines = ["| inputs | pairs | brightness lq/gt | noise sigma, lq scaled to gt | gt sigma | balance R/G/B lq/gt |",
             "|---|---:|---:|---:|---:|---|", row(f"{args.real} (real)", real)]  # fmt: skip
    for sev in (float(s) for s in args.severities.split(",")):
        stats = []
        for i, gt in enumerate(clean):
            spec = D.parse("low_light", severity=sev, rng=np.random.default_rng(i))
            lq = np.round(np.clip(spec.apply(gt, np.random.default_rng(i)), 0, 1) * 255) / 255
            stats.append(pair_stats(lq.astype(np.float32), gt))
        lines.append(row(f"synthetic low_light@{sev:g} (BSD400 last {args.holdout})", stats))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
