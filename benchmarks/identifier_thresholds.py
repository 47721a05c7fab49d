"""The presence threshold of one kind that costs blind restorations least, chosen on held-out training images.

    python benchmarks/identifier_thresholds.py --kind rain --false-alarm-cost 0.06 --miss-cost 1.03

The costs are PSNR (dB) lost per image by a false alarm and by a miss of ``--kind``, as
``benchmarks/identifier_costs.py`` measures them on held-out BSD400 images (average them over the bases a user
meets). The rates come from the images of ``benchmarks/identifier_scene.py``: the last ``--holdout`` BSD400 images
(held out by the training scripts, never a test set), clean and degraded whole by every kind at severities 0.3,
0.6 and 0.9. For each threshold of the grid the identifier's full decision runs (``DegradationIdentifier.decide``,
so ``thresholds_given`` still apply), and the cost is false alarms x false-alarm cost + misses x miss cost, per
image. It prints the table and the threshold of least cost (a tie keeps the higher threshold): the value for the
identifier's ``kind_thresholds``. ``--json`` also writes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from identifier_scene import add_holdout_args, holdout_images, load_holdout

from defusion.perception import DegradationIdentifier

GRID = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))


def sweep(identifier: DegradationIdentifier, views, kind: str, fa_cost: float, miss_cost: float, grid=GRID):
    """[{threshold, hits, n_present, false_alarms, n_absent, cost}] for ``kind`` over ``views``
    ((true kind or None, presence probabilities, severities)); the identifier's config is left as it was."""
    saved = identifier.config.kind_thresholds
    rows = []
    try:
        for t in grid:
            identifier.register_to_config(kind_thresholds={**(saved or {}), kind: float(t)})
            reported = [kind in {k for k, _, _ in identifier.decide(p, s)} for _, p, s in views]
            present = [true == kind for true, _, _ in views]
            hits = sum(r and t_ for r, t_ in zip(reported, present))
            fas = sum(r and not t_ for r, t_ in zip(reported, present))
            n_present = sum(present)
            cost = (fas * fa_cost + (n_present - hits) * miss_cost) / len(views)
            rows.append({"threshold": float(t), "hits": hits, "n_present": n_present, "false_alarms": fas,
                         "n_absent": len(views) - n_present, "cost": cost})  # fmt: skip
    finally:
        identifier.register_to_config(kind_thresholds=saved)
    return rows


def best(rows) -> float:
    least = min(r["cost"] for r in rows)
    return max(r["threshold"] for r in rows if r["cost"] <= least + 1e-12)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_holdout_args(p)
    p.add_argument("--kind", required=True)
    p.add_argument("--false-alarm-cost", type=float, required=True, help="PSNR (dB) a false alarm costs")
    p.add_argument("--miss-cost", type=float, required=True, help="PSNR (dB) a miss costs")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.false_alarm_cost < 0 or args.miss_cost < 0:
        p.error("costs are PSNR losses in dB, at least 0 (a negative cost: count it as 0)")
    path, identifier, files = load_holdout(args)
    if args.kind not in identifier.kinds:
        p.error(f"the identifier does not report {args.kind!r}; it reports {identifier.kinds}")
    views = [(kind, *identifier.probabilities(img)) for kind, img in holdout_images(files, identifier.kinds)]
    rows = sweep(identifier, views, args.kind, args.false_alarm_cost, args.miss_cost)
    print(f"identifier {path}; last {len(files)} BSD400 images; {args.kind}: false alarm "
          f"{args.false_alarm_cost} dB, miss {args.miss_cost} dB\n")  # fmt: skip
    print("| threshold | hits | false alarms | cost (dB per image) |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['threshold']:.2f} | {100 * r['hits'] / r['n_present']:.0f} % "
              f"| {100 * r['false_alarms'] / r['n_absent']:.1f} % | {r['cost']:.4f} |")  # fmt: skip
    chosen = best(rows)
    print(f"\nkind_thresholds[{args.kind!r}] = {chosen:.2f} (now {identifier.threshold_of(args.kind):.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"identifier": str(path), "kind": args.kind, "holdout": len(files),
                                               "false_alarm_cost": args.false_alarm_cost, "miss_cost": args.miss_cost,
                                               "rows": rows, "threshold": chosen}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
