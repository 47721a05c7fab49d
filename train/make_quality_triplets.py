#!/usr/bin/env python
"""Perceive-IR stage 1a: (low, medium, high) quality triplets with a 2-fold cross-validated "medium" restorer.

    python train/make_quality_triplets.py --clean_dirs ../shared/data/BSD400/gt --kinds noise,rain,haze \
        --out runs/triplets --model restormer --preset small --steps 2000

1. Every (task, clean image) pair is degraded once, deterministically: noise gets one sigma of (15, 25, 50)
   assigned round-robin by index, other kinds a spec sampled at severity 0.5 from a seed derived from the pair.
   Written to ``out/<task>/low`` (degraded) and ``out/<task>/high`` (clean).
2. Each pair goes to fold SHA1("task|file name") mod 2. Folds, specs and noise seeds use the file name, not its
   folder, so the same images give the same triplets on any machine.
3. For each fold, ``train_restorer.py`` trains a deliberately mediocre restorer (default Restormer ``small``) on
   that fold's pairs (repeat factors ``--repeats``), which then renders the *other* fold's low-quality images at
   full resolution in 512 px tiles (overlap 32) into ``out/<task>/medium``.

So no restorer ever renders an image it was trained on. ``out/manifest.json`` records folds, specs and
settings. Clean images must come from training pools, never from test sets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from defusion import degradations as D  # noqa: E402
from defusion.data import list_images  # noqa: E402
from defusion.images import load_image, save_image  # noqa: E402

NOISE_SIGMAS = (15, 25, 50)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean_dirs", nargs="+", required=True)
    p.add_argument("--kinds", default="noise,rain,haze")
    p.add_argument("--repeats", default=None, help="repeat factor per kind for the fold restorers (default 1 each)")
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="restormer")
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max_images", type=int, default=None, help="use at most this many clean images")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true")
    return p.parse_args(argv)


def fold_of(task: str, path: Path) -> int:
    return int(hashlib.sha1(f"{task}|{path.name}".encode()).hexdigest(), 16) % 2


def spec_for(task: str, path: Path, index: int):
    if task == "noise":
        return D.parse(f"noise{NOISE_SIGMAS[index % len(NOISE_SIGMAS)]}")
    return D.parse(task, severity=0.5, rng=np.random.default_rng(zlib.crc32(f"{task}|{path.name}".encode())))


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.symlink(os.path.relpath(src, dst.parent), dst)


def main(args) -> dict:
    from defusion.pipelines import RestorerPipeline
    from train_restorer import main as train_main
    from train_restorer import parse_args as train_args

    out = Path(args.out)
    kinds = [D.get(k).name for k in args.kinds.split(",") if k.strip()]
    reps = [int(r) for r in args.repeats.split(",")] if args.repeats else [1] * len(kinds)
    files = [f for d in args.clean_dirs for f in list_images(d)][: args.max_images]
    manifest = {"settings": vars(args), "pairs": []}
    for task in kinds:
        for i, path in enumerate(files):
            stem = f"{i:05d}_{path.stem}"
            low, high = out / task / "low" / f"{stem}.png", out / task / "high" / f"{stem}.png"
            spec = spec_for(task, path, i)
            if not low.exists():
                clean = load_image(path)
                rng = np.random.default_rng(zlib.crc32(f"{task}|{path.name}|noise".encode()))
                save_image(clean, high)
                save_image(np.clip(spec.apply(clean, rng), 0, 1), low)
            fold = fold_of(task, path)
            link(low, out / "_folds" / str(fold) / task / "lq" / f"{stem}.png")
            link(high, out / "_folds" / str(fold) / task / "gt" / f"{stem}.png")
            manifest["pairs"].append({"task": task, "stem": stem, "source": str(path), "fold": fold, "spec": spec.to_dict()})
    for fold in (0, 1):
        model_dir = out / "_medium_models" / str(fold)
        if not (model_dir / "pipeline").is_dir():
            paired = [f"{out / '_folds' / str(fold) / t}:{t}" for t in kinds if (out / "_folds" / str(fold) / t).is_dir()]
            rep = [str(r) for t, r in zip(kinds, reps) if (out / "_folds" / str(fold) / t).is_dir()]
            argv = ["--model", args.model, "--preset", args.preset, "--output_dir", str(model_dir), "--paired", *paired,
                    "--paired_repeats", *rep, "--val_holdout", "0", "--max_train_steps", str(args.steps),
                    "--resolution", str(args.resolution), "--train_batch_size", str(args.batch), "--seed", str(args.seed + fold),
                    "--checkpointing_steps", str(max(1, args.steps // 4)), "--resume_from_checkpoint", "latest"]  # fmt: skip
            train_main(train_args(argv + (["--cpu"] if args.cpu else [])))
        pipe = RestorerPipeline.from_pretrained(model_dir / "pipeline")
        pipe.set_progress_bar_config(disable=True)
        for pair in manifest["pairs"]:
            if pair["fold"] == fold:
                continue  # rendered only by the model that did not see it
            dst = out / pair["task"] / "medium" / f"{pair['stem']}.png"
            if dst.exists():
                continue
            img = load_image(out / pair["task"] / "low" / f"{pair['stem']}.png")
            deg = pair["task"] if pipe.needs_prompt else None
            res = pipe(img, degradation=deg, output_type="np", tile_size=args.tile, tile_overlap=32).images[0]
            dst.parent.mkdir(parents=True, exist_ok=True)
            save_image(res, dst)
            pair["medium_by_fold_model"] = fold
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


if __name__ == "__main__":
    main(parse_args())
