"""Can one view learn what the self-ensemble knows? A fine-tuning probe for a faster default sampler.

    python benchmarks/ensemble_distill.py --minutes 15 --out runs/distill [--start FOLDER] [--gt-weight 0]

The default sampler averages four views (rotations/flips with one-pixel grid shifts): on held-out sigma-25 noise
that is about 0.6 dB over one view, at four times the time. This fine-tunes a copy of ``--model``'s denoiser on
Gaussian-noise crops of the BSD400 training images (the last ``--holdout`` held out) towards the frozen model's
``--views``-view ensemble at the first DDIM step (the only step the default sampler runs), blended with the
ground truth by ``--gt-weight``, for ``--minutes``; then saves the pipeline to ``--out`` and reports held-out
PSNR (instructed with the noise instruction, one DDIM step, bfloat16 where native) at one view and at
``--views`` views, for the frozen model and the fine-tuned copy, through ``defusion.eval.evaluate``.
``--start`` continues from an earlier ``--out`` (the teacher stays ``--model``).

Views are taken without padding: each crop has a one-pixel ring around the model input, a view moves its window
by the view's grid shift, and the loss is on the crop's centre, away from the borders.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ensemble_passes import holdout_root
from PIL import Image

import defusion.degradations as D
from defusion import DefusionPipeline
from defusion.ensemble import ENSEMBLE_SIZES, dihedral, dihedral_inverse, ensemble_plan
from defusion.eval import evaluate
from defusion.eval.methods import PipelineMethod
from defusion.instructions import VisualInstruction
from defusion.pipelines.loading import native_bf16
from defusion.weights import resolve


def view_input(x: torch.Tensor, view, size: int) -> torch.Tensor:
    """The ``size`` x ``size`` model input of ``view`` from a (B, C, size + 2, size + 2) crop (the image and a
    one-pixel ring): the image rotated/flipped and moved down/right by the view's shift, as
    ``defusion.ensemble.ensemble_view`` shows it to the model, with real pixels where that pads."""
    mode, dy, dx = view
    return dihedral(x, mode)[..., 1 - dy : 1 - dy + size, 1 - dx : 1 - dx + size]


def view_centre(y: torch.Tensor, view, margin: int, centre: int) -> torch.Tensor:
    """Undo ``view_input`` on a prediction and keep the image's centre (``margin`` pixels in from its border)."""
    mode, dy, dx = view
    y = dihedral_inverse(torch.nn.functional.pad(y, (1 - dx, 1 + dx, 1 - dy, 1 + dy)), mode)
    return y[..., 1 + margin : 1 + margin + centre, 1 + margin : 1 + margin + centre]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="defusion-small")
    p.add_argument("--start", default=None, help="the student's starting pipeline (default: --model)")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", required=True, help="where the fine-tuned pipeline is saved")
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--gt-weight", type=float, default=0.0, help="share of the ground truth in the target")
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=96, help="the centre the loss sees (a multiple of 16)")
    p.add_argument("--sigma", default="5,55", help="noise sigma range of the training crops")
    p.add_argument("--holdout", type=int, default=8)
    p.add_argument("--tasks", default="noise15,noise25,noise50", help="held-out tasks to report")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        lo, hi = (float(s) for s in args.sigma.split(","))
    except ValueError:
        p.error(f"--sigma takes LO,HI, got {args.sigma!r}")
    if args.crop % 16 or args.crop < 16 or not 0 <= args.gt_weight <= 1 or args.minutes <= 0 or not 0 <= lo < hi:
        p.error("--crop must be a positive multiple of 16, --gt-weight in [0, 1], --minutes > 0, --sigma LO,HI")
    if args.holdout < 1 or args.batch < 1 or args.views not in ENSEMBLE_SIZES:
        p.error(f"--holdout and --batch must be at least 1, --views one of {ENSEMBLE_SIZES}")

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    teacher_pipe = DefusionPipeline.from_pretrained(resolve(args.model))
    pipe = DefusionPipeline.from_pretrained(resolve(args.start or args.model))
    files = sorted(p for p in (Path(args.data_root) / "BSD400" / "gt").iterdir() if p.suffix.lower() in {".png", ".jpg"})
    images = [np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255 for f in files[: -args.holdout]]
    margin = 8
    size = args.crop + 2 * margin
    images = [im for im in images if min(im.shape[:2]) > size + 2]  # room for a crop and its one-pixel ring
    if not images:
        p.error(f"no BSD400 training image under {args.data_root} is larger than {size + 2} px (--crop {args.crop})")
    teacher = teacher_pipe.denoiser.eval().requires_grad_(False)
    student = pipe.denoiser.train()
    params = [q for q in student.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    pipe.scheduler.set_timesteps(1)
    first = int(pipe.scheduler.timesteps[0])
    views = ensemble_plan(args.views)
    # instructions from a grid of sigmas (building one takes longer than a training step)
    grid = np.arange(lo, hi + 1e-6, 2.5)
    inst_size = max(64, pipe.degradation_tokenizer.config.input_size)
    bank = {(i, k): VisualInstruction.from_spec(D.GaussianNoise(sigma=float(s)), seed=k, size=inst_size)
            for i, s in enumerate(grid) for k in range(3)}  # fmt: skip
    bf16 = native_bf16("cpu")  # the rest is float32, as in bfloat16 training

    start, losses, step = time.time(), [], 0
    while time.time() - start < args.minutes * 60:
        lqs, gts, insts = [], [], []
        for _ in range(args.batch):
            im = images[rng.integers(len(images))]
            y, x = rng.integers(im.shape[0] - size - 1), rng.integers(im.shape[1] - size - 1)
            crop = dihedral(torch.from_numpy(im[y : y + size + 2, x : x + size + 2]).permute(2, 0, 1), int(rng.integers(8)))
            crop = np.ascontiguousarray(crop.permute(1, 2, 0).numpy())
            i = int(rng.integers(len(grid)))
            sigma = float(np.clip(grid[i] + rng.uniform(-1.25, 1.25), 0, None))
            lqs.append(D.GaussianNoise(sigma=sigma)(crop, rng)), gts.append(crop), insts.append(bank[i, int(rng.integers(3))])
        lq = torch.from_numpy(np.stack(lqs)).permute(0, 3, 1, 2) * 2 - 1
        gt = torch.from_numpy(np.stack(gts)).permute(0, 3, 1, 2) * 2 - 1
        t = torch.full((args.batch,), first)
        with torch.no_grad():
            tokens = pipe.encode_instruction(insts, "cpu", torch.float32)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                target = sum(view_centre(teacher(torch.randn(args.batch, 3, size, size), t, view_input(lq, v, size), tokens).float(),
                                         v, margin, args.crop) for v in views) / len(views)  # fmt: skip
        inner = slice(1 + margin, 1 + margin + args.crop)
        target = (1 - args.gt_weight) * target + args.gt_weight * (lq - gt)[..., inner, inner]
        v = views[rng.integers(len(views))]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = student(torch.randn(args.batch, 3, size, size), t, view_input(lq, v, size), tokens).float()
        loss = torch.nn.functional.mse_loss(view_centre(pred, v, margin, args.crop), target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            print(f"step {step}: loss {np.mean(losses[-100:]):.3e} ({time.time() - start:.0f} s)", flush=True)
    student.eval()
    pipe.save_pretrained(args.out)
    print(f"{step} steps of batch {args.batch} in {(time.time() - start) / 60:.1f} min; saved to {args.out}")

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = holdout_root(args.data_root, args.holdout, Path(tmp))
        for name, folder in (("frozen", resolve(args.model)), ("fine-tuned", args.out)):
            for n in (1, args.views):
                method = PipelineMethod(folder, instruction="noise", steps=1, self_ensemble=n)
                method.pipe.set_precision("auto")
                res = evaluate(method, [f"BSD400val:{k}" for k in tasks], root, lpips=False, progress=False)
                rows.append((name, n, [res["tasks"][f"BSD400val:{k}"]["psnr"] for k in tasks]))
    print(f"\nheld-out BSD400 (last {args.holdout}), instructed, one DDIM step, PSNR dB\n")
    print("| model | views | " + " | ".join(tasks) + " |")
    print("|---|---:|" + "---:|" * len(tasks))
    for name, n, ps in rows:
        print(f"| {name} | {n} | " + " | ".join(f"{q:.2f}" for q in ps) + " |")


if __name__ == "__main__":
    main()
