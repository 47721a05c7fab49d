"""What blind mode detects on real photos: the identifier's hit rate per real degraded set, its false alarms on
the clean photos of the same sets, and on synthetic noise and JPEG.

    python benchmarks/identifier_real.py --model default --data-root ../shared/data
    python benchmarks/identifier_real.py --identifier runs/identifier/identifier   # a trained candidate

Rows: each set's degraded images (``lq/``, whose kind is known: Rain100L rain, SOTS haze, LOL and the
degraded-only LIME/DICM low light, EUVP underwater), the clean ``gt/`` photos of every set (where any kind
reported is a false alarm), and CBSD68 with sigma 25 noise / LIVE1 at JPEG q10 made as the harness makes them.
``hit`` is the share of images in which the set's kind is reported, ``clean`` the share reported clean, and
``also`` the other kinds reported, with their counts. These are test sets: this script measures, it never
chooses a threshold (``train/train_identifier.py`` calibrates on held-out training images).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from defusion.data import list_images
from defusion.eval.tasks import PAIRED_DEGRADATIONS, parse_task
from defusion.images import load_image
from defusion.perception import DegradationIdentifier
from defusion.weights import resolve

DEGRADED_ONLY = {"LIME": "low_light", "DICM": "low_light"}
SYNTHETIC = {"CBSD68:noise25": "noise", "LIVE1:jpeg10": "jpeg"}


def rows_of(data_root: Path, limit: int | None):
    """(row name, expected kind or None for clean, [images]) for every set found under ``data_root``."""
    for name, kind in {**PAIRED_DEGRADATIONS, **DEGRADED_ONLY}.items():
        lq = data_root / name / "lq"
        if name.endswith("_sample") and (data_root / name.removesuffix("_sample")).is_dir():
            continue  # the full set is there
        if lq.is_dir():
            yield f"{name} lq", kind, (load_image(f) for f in list_images(lq)[:limit])
    for name in PAIRED_DEGRADATIONS:
        gt = data_root / name / "gt"
        if gt.is_dir() and not (name.endswith("_sample") and (data_root / name.removesuffix("_sample")).is_dir()):
            yield f"{name} gt", None, (load_image(f) for f in list_images(gt)[:limit])
    for name, kind in SYNTHETIC.items():
        task = parse_task(name)
        gt = data_root / task.dataset / "gt"
        if gt.is_dir():
            files = list_images(gt)[:limit]
            yield name, kind, (task.spec(f.stem).apply(load_image(f)) for f in files)


def measure(identifier: DegradationIdentifier, data_root: Path, limit: int | None = None) -> list[dict]:
    out = []
    for row, kind, images in rows_of(data_root, limit):
        n = hits = clean = 0
        also = Counter()
        for img in images:
            if img.shape[2] == 1:
                img = img.repeat(3, axis=2)
            found = {k for k, _, _ in identifier.identify(img)}
            n += 1
            hits += kind in found
            clean += not found
            also.update(found - {kind})
        out.append({"row": row, "kind": kind, "n": n, "hit": hits / n if kind else None, "clean": clean / n,
                    "also": dict(also.most_common())})  # fmt: skip
        print(f"{row}: n={n} hit={out[-1]['hit']} clean={clean / n:.2f} also={dict(also.most_common(4))}", flush=True)
    return out


def table(rows: list[dict]) -> str:
    lines = ["| images | n | kind | hit | reported clean | other kinds reported (images) |", "|---|---:|---|---:|---:|---|"]
    for r in rows:
        hit = "-" if r["hit"] is None else f"{100 * r['hit']:.0f} %"
        also = ", ".join(f"{k} {v}" for k, v in r["also"].items()) or "-"
        lines.append(f"| {r['row']} | {r['n']} | {r['kind'] or 'clean'} | {hit} | {100 * r['clean']:.0f} % | {also} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="a pipeline whose identifier is measured")
    p.add_argument("--identifier", default=None, help="an identifier folder instead (e.g. a training run's)")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--limit", type=int, default=None, help="at most N images per row")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    path = Path(args.identifier) if args.identifier else Path(resolve(args.model)) / "identifier"
    identifier = DegradationIdentifier.from_pretrained(path).eval()
    rows = measure(identifier, Path(args.data_root), args.limit)
    print(f"\nidentifier: {path}\n\n{table(rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"identifier": str(path), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
