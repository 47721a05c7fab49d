"""Where the self-ensemble's gain on sigma-25 noise comes from: the initial noise, the orientation, or the tile size.

    python benchmarks/noise_variance.py --model defusion-small --data-root ../shared/data --limit 5

On the first ``--limit`` images of ``--task`` (instructed with the noise instruction, 4 DDIM steps), through
``defusion.eval.evaluate``:

* ``seed 0``: one pass, as the evaluation harness runs it;
* ``mean of N seeds``: the average of N passes that differ only in the initial noise of the diffusion;
* ``8 rotations/flips``: ``self_ensemble=True`` (every pass from the same initial noise state);
* ``tile T``: one pass processed in T x T tiles (``--tiles``), to see whether the training crop size matters.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from defusion.eval import evaluate
from defusion.eval.methods import PipelineMethod
from defusion.weights import resolve


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="defusion-small")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--task", default="CBSD68:noise25")
    p.add_argument("--instruction", default="noise")
    p.add_argument("--limit", type=int, default=5)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--tiles", default="96,160", help="comma-separated tile sizes (multiples of 16); empty: none")
    args = p.parse_args(argv)

    method = PipelineMethod(resolve(args.model), instruction=args.instruction)
    pipe = method.pipe

    def seed_mean(img):
        return np.mean([pipe(img, instruction=args.instruction, output_type="np",
                             generator=torch.Generator().manual_seed(s)).images[0] for s in range(args.seeds)], axis=0)  # fmt: skip

    def ensemble(img):
        return pipe(img, instruction=args.instruction, output_type="np", generator=torch.Generator().manual_seed(0),
                    self_ensemble=True).images[0]  # fmt: skip

    runs = [("seed 0", method), (f"mean of {args.seeds} seeds", seed_mean), ("8 rotations/flips", ensemble)]
    for t in [int(t) for t in args.tiles.split(",") if t]:
        runs.append((f"tile {t}", PipelineMethod(resolve(args.model), instruction=args.instruction, tile_size=t)))
    print(f"\n{args.model}, {args.task}, instruction {args.instruction!r}, first {args.limit} images (PSNR dB)\n")
    print("| run | PSNR |\n|---|---:|")
    for name, fn in runs:
        res = evaluate(fn, [args.task], args.data_root, limit=args.limit, lpips=False, method_name=name, progress=False)
        if args.task not in res["tasks"]:
            raise FileNotFoundError(res["skipped"].get(args.task, f"no data for {args.task}"))
        print(f"| {name} | {res['tasks'][args.task]['psnr']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
