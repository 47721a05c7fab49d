"""How fast does a Defusion U-Net + bridge learn to denoise? A noise-only regression probe on CPU.

The first DDIM step of Defusion sees pure noise (t = 999), so the whole LQ -> degradation mapping must come
through the Image Restoration Bridge. This probe trains only that step (``sample`` prediction of
y0 = x_LQ - x_HQ, Gaussian noise sigma 5-50, BSD400 crops, no instruction) for a few hundred steps and
reports the loss relative to predicting zero (1.0 = nothing learned) and the held-out PSNR gain at sigma 25
(last images of BSD400, never a test set). Variants compare bridge sizes against a plain CNN reference.

    python benchmarks/noise_probe.py --variant bridge --bridge_blocks 2 --steps 300
    python benchmarks/noise_probe.py --variant cnn --steps 300
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from defusion.data.restoration import SyntheticDegradationDataset, list_images
from defusion.degradations import parse
from defusion.images import load_image
from defusion.models import DefusionDenoiser, DefusionUNet, ImageRestorationBridge, VisualInstructionAdapter


def build(args):
    if args.variant == "cnn":  # DnCNN-like reference: 8 conv layers of 64 at full resolution
        layers = [nn.Conv2d(3, 64, 3, padding=1), nn.ReLU()]
        for _ in range(6):
            layers += [nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()]
        net = nn.Sequential(*layers, nn.Conv2d(64, 3, 3, padding=1))
        return list(net.parameters()), lambda lq: net(lq)
    unet = DefusionUNet.from_preset(args.preset)
    fc = None
    if args.bridge_width0:
        fc = [args.bridge_width0] + list(unet.encoder_channels[1:])
    bridge = ImageRestorationBridge.for_unet(unet, feature_channels=fc, num_res_blocks=args.bridge_blocks)
    denoiser = DefusionDenoiser(unet, bridge, VisualInstructionAdapter.from_unet(unet))

    def f(lq):  # no instruction: the instruction branch is off, so only the U-Net and the bridge learn
        y_t = lq if args.variant == "direct" else torch.randn_like(lq)
        return denoiser(y_t, torch.full((lq.shape[0],), 999), lq, None, instruction_scale=0.0)

    return list(unet.parameters()) + list(bridge.parameters()), f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=["bridge", "direct", "cnn"], default="bridge",
                    help="bridge: y_t is pure noise, LQ only via the bridge; "
                         "direct: LQ fed as y_t; cnn: reference")  # fmt: skip
    ap.add_argument("--preset", default="small")
    ap.add_argument("--bridge_blocks", type=int, default=1)
    ap.add_argument("--bridge_width0", type=int, default=0, help="bridge width at level 0 (0: the U-Net's)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--data", default="../shared/data/BSD400/gt")
    ap.add_argument("--holdout", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="append a JSON line with the result here")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    files = list_images(args.data)
    train, held = files[: -args.holdout], files[-args.holdout :]
    ds = SyntheticDegradationDataset(train, ["noise"], crop=args.crop, instruction=False, seed=args.seed)
    dl = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True)
    params, f = build(args)
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr)

    # held-out: 128 px centre crops at sigma 25, fixed noise
    spec = parse("noise25")
    rng = np.random.default_rng(123)
    gts, lqs = [], []
    for path in held:
        img = load_image(path)
        h, w = img.shape[:2]
        top, left = (h - 128) // 2, (w - 128) // 2
        gt = img[top : top + 128, left : left + 128]
        gts.append(torch.from_numpy(gt).permute(2, 0, 1).float() * 2 - 1)
        lqs.append(torch.from_numpy(spec.apply(gt, rng)).permute(2, 0, 1).float() * 2 - 1)
    gt_b, lq_b = torch.stack(gts), torch.stack(lqs)

    def psnr(a, b):
        mse = ((a.clamp(-1, 1) - b) / 2).pow(2).flatten(1).mean(1)
        return float((10 * torch.log10(1 / mse)).mean())

    step, t0, hist, rows = 0, time.time(), [], []
    epoch = 0
    while step < args.steps:
        ds.set_epoch(epoch)
        epoch += 1
        for b in dl:
            y0 = b["lq"] - b["gt"]
            loss = F.mse_loss(f(b["lq"]), y0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            hist.append((loss.item(), y0.pow(2).mean().item()))
            if step % 50 == 0 or step == args.steps:
                h = np.array(hist[-50:])
                with torch.no_grad():
                    torch.manual_seed(0)
                    out = lq_b - f(lq_b)
                row = dict(step=step, ratio=round(float(h[:, 0].sum() / h[:, 1].sum()), 3),
                           heldout_in=round(psnr(lq_b, gt_b), 2), heldout_out=round(psnr(out, gt_b), 2),
                           seconds=round(time.time() - t0, 1))  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
            if step >= args.steps:
                break
    result = dict(vars(args), params=n_params, final=rows[-1])
    print(json.dumps(result))
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
