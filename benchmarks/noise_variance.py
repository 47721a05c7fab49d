"""Where the self-ensemble's gain on sigma-25 noise comes from: the initial noise, the orientation, or the tile size.

    python benchmarks/noise_variance.py --model defusion-small --data-root ../shared/data --limit 5

On the first ``--limit`` images of ``--task`` (instructed with the noise instruction, the model's default DDIM
steps), through ``defusion.eval.evaluate``:

* ``seed 0``: one view (no self-ensemble, whatever the model's default);
* ``mean of N seeds``: the average of N passes that differ only in the initial noise of the diffusion;
* ``8 rotations/flips``: the 8 dihedral transforms, no shift (every pass from the same initial noise state);
* ``4 shifts of S px``: the plain image moved down/right by 0 or S pixels in each direction (``--shifts``): a
  one-pixel shift changes the phase of the U-Net's 2x2 pixel-unshuffle grid, an 8-pixel one does not;
* ``tile T``: one pass processed in T x T tiles (``--tiles``), to see whether the training crop size matters.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from defusion.eval import evaluate
from defusion.eval.methods import PipelineMethod
from defusion.ensemble import ensemble_unview, ensemble_view
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
    p.add_argument("--shifts", default="1,8", help="comma-separated shifts in pixels; empty: none")
    args = p.parse_args(argv)

    pipe = PipelineMethod(resolve(args.model)).pipe  # loaded as the harness loads it (fp32, no progress bar)

    def restore(img, seeds=(0,), **kwargs):
        """The mean over ``seeds`` of the instructed restoration, one view each (one seed: a single call)."""
        return np.mean([pipe(img, instruction=args.instruction, output_type="np", generator=torch.Generator().manual_seed(s),
                             self_ensemble=1, **kwargs).images[0] for s in seeds], axis=0)  # fmt: skip

    def views(img, plan):
        """The mean over ``plan`` of (dihedral mode, shift down, shift right) views, each restored with seed 0."""
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)
        outs = [ensemble_unview(torch.from_numpy(restore(ensemble_view(x, *v).permute(1, 2, 0).numpy())).permute(2, 0, 1), *v)
                for v in plan]  # fmt: skip
        return (sum(outs) / len(outs)).permute(1, 2, 0).numpy()

    runs = [("seed 0", restore), (f"mean of {args.seeds} seeds", lambda img: restore(img, seeds=range(args.seeds))),
            ("8 rotations/flips", lambda img: views(img, [(k, 0, 0) for k in range(8)]))]  # fmt: skip
    for s in [int(s) for s in args.shifts.split(",") if s]:
        runs.append((f"4 shifts of {s} px", lambda img, s=s: views(img, [(0, dy, dx) for dy in (0, s) for dx in (0, s)])))
    for t in [int(t) for t in args.tiles.split(",") if t]:
        runs.append((f"tile {t}", lambda img, t=t: restore(img, tile_size=t)))
    print(f"\n{args.model}, {args.task}, instruction {args.instruction!r}, first {args.limit} images (PSNR dB)\n")
    print("| run | PSNR |\n|---|---:|")
    for name, fn in runs:
        res = evaluate(fn, [args.task], args.data_root, limit=args.limit, lpips=False, method_name=name, progress=False)
        if args.task not in res["tasks"]:
            raise FileNotFoundError(res["skipped"].get(args.task, f"no data for {args.task}"))
        print(f"| {name} | {res['tasks'][args.task]['psnr']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
