"""Which kinds should the identifier also judge on the whole image (``scene_kinds``)? Measured on held-out
training images, never on a test set.

    python benchmarks/identifier_scene.py --model default --data-root ../shared/data

The last ``--holdout`` BSD400 images (held out by ``train/train_identifier.py``) are degraded whole, at their own
resolution, by each kind at severities 0.3, 0.6 and 0.9 (scene-wide kinds then vary across the photo as they do in
real ones: haze thickens with the synthetic depth from bottom to top). For every kind it prints the hit rate of the
native crops alone and with the scene view (``DegradationIdentifier.probabilities``: the scene view counts where
it is more confident and a crop reaches the threshold), and the false-alarm rate of both on the clean images and
on the images degraded by every other kind. A kind is chosen when the scene view finds at least ``--min-gain`` of
its images more and adds at most half as many false alarms as it adds hits (in images); the choice is printed as
the value for the identifier's ``scene_kinds``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from defusion import degradations as D
from defusion.data import list_images
from defusion.images import load_image
from defusion.perception import DegradationIdentifier
from defusion.weights import resolve

SEVERITIES = (0.3, 0.6, 0.9)


def crop_and_scene(identifier: DegradationIdentifier, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Presence probabilities per kind from the native crops alone and with every kind a scene kind (the rule of
    ``DegradationIdentifier.probabilities`` applies per kind, so one call gives each kind's value)."""
    saved = identifier.config.scene_kinds
    identifier.register_to_config(scene_kinds=None)
    crops, _ = identifier.probabilities(img)
    identifier.register_to_config(scene_kinds=identifier.kinds)
    merged, _ = identifier.probabilities(img)
    identifier.register_to_config(scene_kinds=saved)
    return crops.numpy(), merged.numpy()


def add_holdout_args(p: argparse.ArgumentParser) -> None:
    """The options of the scripts that measure an identifier on the held-out BSD400 images."""
    p.add_argument("--model", default="default")
    p.add_argument("--identifier", default=None, help="an identifier folder instead of the model's")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--holdout", type=int, default=20)


def load_holdout(args) -> tuple[Path, DegradationIdentifier, list]:
    """(identifier folder, identifier in eval mode, the last ``--holdout`` BSD400 files) for ``add_holdout_args``."""
    path = Path(args.identifier) if args.identifier else Path(resolve(args.model)) / "identifier"
    files = list_images(Path(args.data_root) / "BSD400" / "gt")[-args.holdout :]
    return path, DegradationIdentifier.from_pretrained(path).eval(), files


def holdout_images(files, kinds, seed: int = 0):
    """(true kind or None, image): each file clean, then degraded whole by each kind at each of ``SEVERITIES``."""
    for i, f in enumerate(files):
        img = load_image(f)
        yield None, img
        for j, kind in enumerate(kinds):
            for s in SEVERITIES:
                rng = np.random.default_rng([seed, i, j, int(100 * s)])
                yield kind, D.get(kind).sample(rng, s).apply(img, rng)


def measure(identifier: DegradationIdentifier, files, seed: int = 0) -> dict:
    """{kind: {hits_crops, hits_scene, n_hits, fa_crops, fa_scene, n_fa}} over the degraded and clean images."""
    kinds, thr = identifier.kinds, np.array([identifier.threshold_of(k) for k in identifier.kinds])
    # (true kind or None, crop probabilities, scene probabilities)
    views = [(kind, *crop_and_scene(identifier, img)) for kind, img in holdout_images(files, kinds, seed)]
    out = {}
    for j, kind in enumerate(kinds):
        pos = [(c[j], sc[j]) for k, c, sc in views if k == kind]
        neg = [(c[j], sc[j]) for k, c, sc in views if k != kind]
        hc = sum(c >= thr[j] for c, _ in pos)
        hs = sum(sc >= thr[j] for _, sc in pos)
        fc = sum(c >= thr[j] for c, _ in neg)
        fs = sum(sc >= thr[j] for _, sc in neg)
        out[kind] = {"hits_crops": int(hc), "hits_scene": int(hs), "n_hits": len(pos), "fa_crops": int(fc),
                     "fa_scene": int(fs), "n_fa": len(neg)}  # fmt: skip
    return out


def choose(stats: dict, min_gain: float) -> list[str]:
    """Kinds whose hits rise by at least ``min_gain`` of their images while the false alarms added are at most half
    the hits gained, counted in images (negatives outnumber positives twelve to one here)."""
    chosen = []
    for kind, r in stats.items():
        gained, added = r["hits_scene"] - r["hits_crops"], r["fa_scene"] - r["fa_crops"]
        if gained >= min_gain * r["n_hits"] and added <= gained / 2:
            chosen.append(kind)
    return chosen


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_holdout_args(p)
    p.add_argument("--min-gain", type=float, default=0.05)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    path, identifier, files = load_holdout(args)
    stats = measure(identifier, files)
    print(f"identifier {path}; last {len(files)} BSD400 images, each kind at severities {SEVERITIES}\n")
    print("| kind | hits, crops | hits, + scene view | false alarms, crops | false alarms, + scene view |")
    print("|---|---:|---:|---:|---:|")
    for kind, r in stats.items():
        print(f"| {kind} | {100 * r['hits_crops'] / r['n_hits']:.0f} % | {100 * r['hits_scene'] / r['n_hits']:.0f} % "
              f"| {100 * r['fa_crops'] / r['n_fa']:.1f} % | {100 * r['fa_scene'] / r['n_fa']:.1f} % |")  # fmt: skip
    chosen = choose(stats, args.min_gain)
    print(f"\nscene_kinds = {json.dumps(chosen)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"identifier": str(path), "holdout": len(files), "stats": stats,
                                               "scene_kinds": chosen}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
