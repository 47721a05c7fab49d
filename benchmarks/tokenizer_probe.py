"""Do degradation tokens tell degradations apart? Probes on held-out visual instructions.

    python benchmarks/tokenizer_probe.py --tokenizer runs/tokenizer-small/tokenizer [--per-class 60]

For every registered degradation kind, instructions are made at random severities (0.3-1) on grounds the
tokenizer never saw (seeds disjoint from training). Features:

* ``tokens``: the residual tokens codes(instruction) - codes(null) of the given tokenizer, pooled over the
  token grid (mean and mean absolute value per channel);
* ``tokens (untrained)``: the same from a randomly initialised tokenizer of the same config (a control);
* ``pixels``: the instruction image itself, downsampled to 32 x 32 (the raw-pixel baseline);
* ``pixel residual``: instruction - null ground at 32 x 32.

Each feature set gets a nearest-centroid classifier and a linear (softmax) probe trained on the train split
and scored on the test split (different grounds and draws). Prints a markdown table of test accuracies.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from defusion import degradations as D
from defusion.instructions import VisualInstruction
from defusion.models import DegradationTokenizer


class ProbeSet(Dataset):
    def __init__(self, per_class: int, seed: int, size: int):
        self.names = D.names()
        self.per_class, self.seed, self.size = per_class, seed, size

    def __len__(self):
        return self.per_class * len(self.names)

    def __getitem__(self, i):
        k = i % len(self.names)
        rng = np.random.default_rng([self.seed, i])
        spec = D.get(self.names[k]).sample(rng, float(rng.uniform(0.3, 1.0)))
        inst = VisualInstruction.from_spec(spec, seed=int(rng.integers(2**31)), size=self.size)
        to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1) * 2 - 1  # noqa: E731
        return to_t(inst.image), to_t(inst.null), k


@torch.no_grad()
def features(tok: DegradationTokenizer | None, loader, device):
    feats, labels = {"pixels": [], "pixel residual": []}, []
    if tok is not None:
        feats["tokens"] = []
    for img, null, y in loader:
        labels.append(y)
        small = lambda x: F.interpolate(x, size=(32, 32), mode="area").flatten(1)  # noqa: E731
        feats["pixels"].append(small(img))
        feats["pixel residual"].append(small(img - null))
        if tok is not None:
            r = tok.tokenize(img.to(device), null=null.to(device)).float().cpu()
            feats["tokens"].append(torch.cat([r.mean(1), r.abs().mean(1)], dim=1))
    return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(labels)


def nearest_centroid(xtr, ytr, xte, yte, n):
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    cents = torch.stack([xtr[ytr == c].mean(0) for c in range(n)])
    return float((torch.cdist(xte, cents).argmin(1) == yte).float().mean())


def linear_probe(xtr, ytr, xte, yte, n, steps=500, wd=1e-3):
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    torch.manual_seed(0)
    lin = torch.nn.Linear(xtr.shape[1], n)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=wd)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(lin(xtr), ytr).backward()
        opt.step()
    return float((lin(xte).argmax(1) == yte).float().mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, help="folder of a saved DegradationTokenizer")
    p.add_argument("--per-class", type=int, default=60, help="instructions per kind in each split")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=123_457)
    args = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trained = DegradationTokenizer.from_pretrained(args.tokenizer).to(device).eval()
    torch.manual_seed(0)
    control = DegradationTokenizer.from_config(trained.config).to(device).eval()
    size = max(64, trained.config.input_size)  # the tokenizer centre-crops and resizes to its input size
    n = len(D.names())
    splits = {}
    for split, seed in (("train", args.seed), ("test", args.seed + 1)):
        loader = DataLoader(ProbeSet(args.per_class, seed, size), batch_size=32, num_workers=args.workers)
        f, y = features(trained, loader, device)
        f_ctl, _ = features(control, loader, device)
        f["tokens (untrained)"] = f_ctl["tokens"]
        splits[split] = (f, y)
    (ftr, ytr), (fte, yte) = splits["train"], splits["test"]
    print(f"{n} kinds, {args.per_class} instructions per kind and split, chance = {1 / n:.3f}\n")
    print("| features | dim | nearest centroid | linear probe |")
    print("|---|---:|---:|---:|")
    for k in ["tokens", "tokens (untrained)", "pixels", "pixel residual"]:
        nc = nearest_centroid(ftr[k], ytr, fte[k], yte, n)
        lp = linear_probe(ftr[k], ytr, fte[k], yte, n)
        print(f"| {k} | {ftr[k].shape[1]} | {nc:.3f} | {lp:.3f} |")


if __name__ == "__main__":
    main()
