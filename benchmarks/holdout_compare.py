"""Compare methods on the held-out BSD400 images: the images to choose a training recipe or a release on.

    python benchmarks/holdout_compare.py --compare default,runs/stage8/export \
        --tasks low_light@0.5,low_light@0.8,low_light@1,noise25,rain,jpeg10 [--holdout 8] [--out DIR]

The training scripts hold out the last ``--holdout`` BSD400 images (sorted by name) for validation, so results
here never look at a test set. ``--tasks`` are degradation names with an optional ``@severity`` (the harness's
task syntax without the set; ``BSD400val:`` is prefixed). Runs ``defusion eval --compare`` on a temporary data
root that links those images: same conventions, methods and table as the harness (blind unless a method says
``:instructed``; ``:bf16`` for bfloat16).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ensemble_passes import holdout_root

from defusion.cli import main as cli_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", required=True, help="methods as for `defusion eval --compare`")
    p.add_argument("--tasks", required=True, help="degradation names, e.g. low_light@1,noise25,rain+noise25")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--holdout", type=int, default=8)
    p.add_argument("--out", default=None, help="folder for the harness's tables and galleries")
    args = p.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or any(":" in t for t in tasks):
        p.error("--tasks takes degradation names without a set (BSD400val: is added), e.g. low_light@1,noise25")
    with tempfile.TemporaryDirectory() as tmp:
        root = holdout_root(args.data_root, args.holdout, Path(tmp))
        cmd = ["eval", "--compare", args.compare, "--tasks", ",".join(f"BSD400val:{t}" for t in tasks),
               "--data-root", str(root), "--no-lpips"]  # fmt: skip
        return cli_main(cmd + (["--out", args.out] if args.out else []))


if __name__ == "__main__":
    raise SystemExit(main())
