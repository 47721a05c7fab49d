"""DefusionPipeline latency and peak memory at 256 / 512 / 1024 px (1024 tiled at 512), as ratios to one U-Net
forward at the same size (or per tile), with FLOPs and achieved GFLOP/s.

    python benchmarks/defusion_speed.py [--preset small] [--sizes 256,512,1024] [--threads 2] [--steps 4]

Each size runs in a fresh subprocess (peak resident memory = ru_maxrss there, minus the footprint after model
construction). Weights are random: speed does not depend on them. The U-Net forward is the whole denoiser (U-Net + bridge + adapter).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from torch.utils.flop_counter import FlopCounterMode
from defusion import DefusionPipeline
preset, size, threads, steps, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
pipe = DefusionPipeline.from_preset(preset)
pipe.set_progress_bar_config(disable=True)
img = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
side = min(size, tile)
x = torch.rand(1, 3, side, side) * 2 - 1
tok = torch.zeros(1, pipe.degradation_tokenizer.num_tokens, pipe.degradation_tokenizer.token_dim)
def fwd():
    with torch.no_grad():
        return pipe.denoiser(x, 999, x, tok)
fwd()
with FlopCounterMode(display=False) as fc:
    fwd()
flops = fc.get_total_flops()
ts = []
for _ in range(3):
    t = time.perf_counter(); fwd(); ts.append(time.perf_counter() - t)
unet_s = float(np.median(ts))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pipe(img, instruction="rain", num_inference_steps=steps, output_type="np", tile_size=tile)
t = time.perf_counter()
pipe(img, instruction="rain", num_inference_steps=steps, output_type="np", tile_size=tile)
pipe_s = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"size": size, "unet_s": unet_s, "pipe_s": pipe_s, "flops": flops, "tile": side,
                  "peak_mb": (peak - base) / 1024.0}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--tile", type=int, default=512)
    args = p.parse_args(argv)
    rows = []
    for s in [int(x) for x in args.sizes.split(",")]:
        r = subprocess.run([sys.executable, "-c", _CHILD, args.preset, str(s), str(args.threads), str(args.steps), str(args.tile)],
                           capture_output=True, text=True)  # fmt: skip
        if r.returncode != 0:
            print(f"{s}px failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"| size | U-Net fwd (at tile) s | GFLOPs/fwd | GFLOP/s | pipeline {args.steps} steps s | x U-Net fwd | peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tiled = f" (tiled {r['tile']})" if r["tile"] < r["size"] else ""
        print(f"| {r['size']}{tiled} | {r['unet_s']:.2f} | {r['flops'] / 1e9:.1f} | {r['flops'] / 1e9 / r['unet_s']:.0f} | "
              f"{r['pipe_s']:.2f} | {r['pipe_s'] / r['unet_s']:.1f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
