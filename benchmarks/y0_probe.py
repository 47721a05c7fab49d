"""How well a trained Defusion pipeline estimates y0 at each training timestep, given a correctly noised state.

    python benchmarks/y0_probe.py runs/table5/epsilon/pipeline runs/table5/ours/pipeline [--degradation noise25]

For held-out BSD400 crops (its last 8 images, never a test set) degraded by ``--degradation``, each timestep t draws
y_t = add_noise(y0, noise, t) with the pipeline's own scheduler, runs the denoiser (told the degradation through its
visual instruction) and turns its output into a y0 estimate (``defusion.diffusion.predicted_y0``). Printed: the
MSE of that estimate (in [-1, 1] units, the restored image's MSE were it used as y0) and, for reference, the input's
MSE (y0 = 0 in degradation space). A sampler can only go where these estimates lead it: an estimate worse than zero
at the high timesteps that a few-step DDIM starts from sends the whole trajectory off.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from defusion import degradations as D
from defusion.data import list_images
from defusion.diffusion import clean_signal, predicted_y0
from defusion.images import load_image
from defusion.pipelines import DefusionPipeline

ROOT = Path(__file__).resolve().parents[1]
TIMESTEPS = (10, 100, 250, 500, 750, 999)


def probe(folder, data_root: Path, degradation: str, crop: int = 128, timesteps=TIMESTEPS, seed: int = 0) -> dict:
    pipe = DefusionPipeline.from_pretrained(folder, dtype=torch.float32)
    files = list_images(data_root / "BSD400" / "gt")[-8:]  # the images training held out
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    spec = D.parse(degradation)
    hq = np.stack([load_image(f)[:crop, :crop] for f in files])
    lq = np.stack([spec.apply(h, rng) for h in hq])
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() * 2 - 1  # noqa: E731
    x_hq, x_lq = to_t(hq), to_t(lq)
    y0 = clean_signal(x_lq, x_hq, pipe.config.diffusion_space)
    tokens = pipe.encode_instruction([pipe.make_instruction(degradation, seed=seed)] * len(files), "cpu", torch.float32)
    out = {"input_mse": float(((x_lq - x_hq) ** 2).mean())}  # the input as the restoration: y0 = 0 in degradation space
    with torch.no_grad():
        for t in timesteps:
            tt = torch.full((len(files),), t)
            noise = torch.randn(y0.shape, generator=gen)
            y_t = pipe.scheduler.add_noise(y0, noise, tt)
            pred = pipe.denoiser(y_t, tt, x_lq, tokens)
            out[t] = float(((predicted_y0(pipe.scheduler, y_t, pred, tt) - y0) ** 2).mean())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipelines", nargs="+")
    p.add_argument("--degradation", default="noise25")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    args = p.parse_args(argv)
    print("| pipeline | input | " + " | ".join(f"t={t}" for t in TIMESTEPS) + " |")
    print("|---|---:|" + "---:|" * len(TIMESTEPS))
    for folder in args.pipelines:
        r = probe(folder, Path(args.data_root), args.degradation)
        print(f"| {folder} | {r['input_mse']:.4f} | " + " | ".join(f"{r[t]:.4g}" for t in TIMESTEPS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
