"""Do the ``paper`` restorer configs fit on a CPU at 256 px? Forward time and peak memory, one fresh process each.

    python benchmarks/paper_configs_cpu.py --size 256 --models restormer,promptir,dfpir,perceive_ir,clearair

Each model runs ``--repeats`` no-grad forwards of one random (1, 3, size, size) image in its own process (so peak
resident memory is that model's alone), with conditions of the shapes the model expects: DFPIR a 512-d prompt
code, Perceive-IR four 768-d DINOv2 features, ClearAIR a 4096-d quality embedding, 512-d degradation and
content embeddings and 16 disjoint region masks (a 4 x 4 grid, like SLIC or SAM output). Perception modules are
not included (see ``restorers_same_budget.py`` for whole-pipeline latency). Reported: parameters, median
forward seconds, peak resident MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MODELS = ["restormer", "promptir", "dfpir", "perceive_ir", "clearair"]


def run_one(model: str, size: int, repeats: int) -> dict:
    import resource
    import time

    import numpy as np
    import torch

    from defusion.pipelines import RESTORERS

    torch.manual_seed(0)
    net = RESTORERS[model].from_preset("paper").eval()
    x = torch.rand(1, 3, size, size) * 2 - 1
    kw = {}
    if model == "dfpir":
        kw["prompt_code"] = torch.randn(1, 512)
    if model == "perceive_ir":
        kw["semantic"] = [torch.randn(1, 768) for _ in range(4)]
    if model == "clearair":
        lab = (torch.arange(size)[:, None] * 4 // size) * 4 + torch.arange(size)[None, :] * 4 // size
        kw = dict(quality=torch.randn(1, 4096), degradation=torch.rand(1, 512), content=torch.randn(1, 512),
                  masks=torch.stack([(lab == i).float() for i in range(16)])[None])  # fmt: skip
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            net(x, **kw)
            times.append(time.perf_counter() - t)
    return {"model": model, "params": sum(p.numel() for p in net.parameters()), "seconds": float(np.median(times)),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads()}  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    rows = []
    for m in args.models.split(","):
        code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import paper_configs_cpu as b; "
                f"print(json.dumps(b.run_one({m!r}, {args.size}, {args.repeats})))")  # fmt: skip
        res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"\npaper presets, one {args.size} x {args.size} forward (no grad), median of {args.repeats}, "
          f"{rows[0]['threads']} threads\n")
    print("| model | params | forward s | peak MB |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
