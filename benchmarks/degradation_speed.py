"""Per-operator timing of the degradation registry on a 512 x 512 RGB image, one thread.

    python benchmarks/degradation_speed.py [--size 512] [--repeats 5]

Prints a markdown table: median milliseconds per call and the ratio to the fastest operator.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from defusion import degradations as D  # noqa: E402
from defusion.assets import sample_path  # noqa: E402
from defusion.images import load_image  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--severity", type=float, default=1.0, help="the strongest setting is the slowest for most ops")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    img = cv2.resize(load_image(sample_path("clean")), (args.size, args.size), interpolation=cv2.INTER_AREA)
    rows = []
    for name in D.names():
        spec = D.get(name).sample(0, args.severity)
        spec.apply(img, 0)  # warm-up
        times = []
        for r in range(args.repeats):
            t = time.perf_counter()
            spec.apply(img, r)
            times.append(time.perf_counter() - t)
        rows.append((name, 1000 * float(np.median(times))))
    fastest = min(ms for _, ms in rows)
    print(f"| operator (severity {args.severity:g}, {args.size}x{args.size}, 1 thread) | median ms | x fastest |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {ms / fastest:.1f} |")


if __name__ == "__main__":
    main()
