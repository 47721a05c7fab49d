#!/usr/bin/env python
"""Pack clean training images into one folder that can travel to a lent GPU machine (64 MiB for everything).

    python train/pack_data.py --data-root ../shared/data --out data_pack [--sets BSD400 Train400_gray] [--max-mib 29]

Copies each set's ``gt`` images byte for byte (no re-encoding: BSD400 is already JPEG) into ``OUT/<set>/`` in
sorted order, until ``--max-mib`` would be passed, and writes ``OUT/MANIFEST.json`` (set, file, bytes, sha256, the
source folder). Training pools only: a test set (anything the harness evaluates on) is refused by name.
``train/train_defusion.py --clean_dirs OUT/BSD400 ... --data_on_device`` decodes them once onto the device.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

TRAINING_POOLS = ("BSD400", "Train400_gray")  # ../shared/data/MANIFEST.md: the training pools; the rest are test sets


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", default="data_pack")
    p.add_argument("--sets", nargs="+", default=["BSD400"])
    p.add_argument("--max-mib", type=float, default=29.0)
    args = p.parse_args(argv)
    for name in args.sets:
        if name not in TRAINING_POOLS:
            raise SystemExit(f"{name} is not a training pool ({', '.join(TRAINING_POOLS)}); test sets never train")
    from defusion.data import list_images

    out = Path(args.out)
    budget, used, rows = int(args.max_mib * 2**20), 0, []
    for name in args.sets:
        src = Path(args.data_root) / name / "gt"
        (out / name).mkdir(parents=True, exist_ok=True)
        for f in list_images(src):
            size = f.stat().st_size
            if used + size > budget:
                break
            dst = out / name / f.name
            shutil.copyfile(f, dst)
            rows.append({"set": name, "file": f.name, "bytes": size, "sha256": hashlib.sha256(dst.read_bytes()).hexdigest()})
            used += size
    summary = {"images": len(rows), "bytes": used, "sets": {n: sum(r["set"] == n for r in rows) for n in args.sets},
               "source": str(Path(args.data_root).resolve())}  # fmt: skip
    (out / "MANIFEST.json").write_text(json.dumps({**summary, "files": rows}, indent=1))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
