"""On-the-fly visual-instruction data for the degradation tokenizer (and for probing its tokens).

Each index is a pure function of (seed, index): a ground from the pool, a random degradation spec (single or
an ordered mixture) and, with probability ``p_clean``, the clean ground itself (the paper's 0.1 replacement).
Training items are a random ``size`` crop of a slightly larger ground plus a random horizontal flip;
validation items use the centre crop and no flip.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import degradations as D
from ..instructions import VisualInstruction


def multi_hot(spec: D.Degradation | None, names: list[str]) -> torch.Tensor:
    y = torch.zeros(len(names))
    if spec is not None:
        for s in spec.steps:
            y[names.index(s.name)] = 1.0
    return y


class InstructionDataset(Dataset):
    """Args:
    num_samples: length of the dataset (indices are independent draws).
    size: crop size returned (224 for the tokenizer).
    margin: extra ground pixels for the random crop (training) / centre crop (validation).
    train: random crop and flip (True) or centre crop (False).
    p_clean: probability that the item is the clean ground (spec None).
    kinds / max_mix / p_single: passed to ``degradations.sample``.
    """

    def __init__(self, num_samples: int, size: int = 224, margin: int = 32, train: bool = True, seed: int = 0,
                 p_clean: float = 0.1, kinds=None, max_mix: int = 3, p_single: float = 0.6, severity=None):  # fmt: skip
        if num_samples <= 0:
            raise ValueError("num_samples must be positive")
        self.num_samples, self.size, self.margin, self.train = num_samples, size, margin, train
        self.seed, self.p_clean, self.kinds, self.max_mix, self.p_single = seed, p_clean, kinds, max_mix, p_single
        self.severity = severity
        self.names = sorted(kinds) if kinds else D.names()

    def __len__(self) -> int:
        return self.num_samples

    def spec(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        if rng.random() < self.p_clean:
            return None, rng
        return D.sample(rng, self.kinds, self.max_mix, self.p_single, self.severity), rng

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        spec, rng = self.spec(index)
        full = max(self.size + self.margin, 64)  # grounds are at least 64 px
        margin = full - self.size
        inst = VisualInstruction.from_spec(spec, seed=int(rng.integers(2**31)), size=full)
        if self.train:
            top, left = (int(x) for x in rng.integers(0, margin + 1, size=2))
            flip = bool(rng.random() < 0.5)
        else:
            top = left = margin // 2
            flip = False
        crops = []
        for img in (inst.image, inst.null):
            c = img[top : top + self.size, left : left + self.size]
            crops.append(c[:, ::-1] if flip else c)
        image, null = (torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1) * 2 - 1 for c in crops)
        return {
            "pixel_values": image,
            "null_values": null,
            "labels": multi_hot(spec, self.names),
            "spec": json.dumps(spec.to_dict() if spec is not None else None),
        }
