"""Latency and peak memory of each method at 256/512/1024/2048 px, batch 1, on this machine.

    python benchmarks/speed.py [--methods identity,nlm,bm3d,dcp] [--sizes 256,512,1024,2048] [--max-seconds 60]

Each (method, size) runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its own; the
reported memory is the peak minus the subprocess's footprint after imports and input creation. Latency is
the median of ``--repeats`` runs after one warm-up. Times are printed as ratios to the fastest method at
each size and to a fixed reference, the time of one 1024 x 1024 x 1024 fp32 matmul in numpy on this
machine, so tables from different machines can be compared. FLOPs are counted with
torch.utils.flop_counter for torch methods; classical methods show "-". A method whose time at one size
exceeds ``--max-seconds`` is not run at larger sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from defusion.eval import load_method
name, size, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fn = load_method(name)
img = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fn(img)
times = []
for _ in range(repeats):
    t = time.perf_counter(); fn(img); times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
flops = getattr(fn, "flops", None)
print(json.dumps({"seconds": float(np.median(times)), "peak_mb": (peak - base) / 1024.0,
                  "flops": flops(size) if callable(flops) else None}))
"""


def matmul_reference(n: int = 1024, repeats: int = 5) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="nlm,bm3d,dcp,wiener")
    p.add_argument("--sizes", default="256,512,1024,2048")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=60.0)
    args = p.parse_args(argv)
    ref = matmul_reference()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for m in args.methods.split(","):
        for s in sizes:
            if results.get((m, sizes[max(0, sizes.index(s) - 1)]), {}).get("seconds", 0) > args.max_seconds:
                continue
            reps = 1 if results.get((m, sizes[max(0, sizes.index(s) - 1)]), {}).get("seconds", 0) > 5 else args.repeats
            r = subprocess.run([sys.executable, "-c", _CHILD, m, str(s), str(reps)], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{m} at {s}px failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            results[(m, s)] = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"reference: 1024^3 fp32 numpy matmul = {ref * 1000:.1f} ms ({2 * 1024**3 / ref / 1e9:.0f} GFLOP/s)\n")
    print("| method | size | latency s | x fastest | x matmul ref | peak MB | GFLOPs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        here = {m: r for (m, sz), r in results.items() if sz == s}
        if not here:
            continue
        fastest = min(r["seconds"] for r in here.values())
        for m, r in here.items():
            fl = "-" if r["flops"] is None else f"{r['flops'] / 1e9:.1f}"
            print(
                f"| {m} | {s} | {r['seconds']:.3f} | {r['seconds'] / fastest:.1f} | {r['seconds'] / ref:.1f} | "
                f"{r['peak_mb']:.0f} | {fl} |"
            )


if __name__ == "__main__":
    main()
