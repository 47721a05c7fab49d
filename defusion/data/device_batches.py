"""Training batches made where the model trains: clean images resident on the device, cropped, turned and
degraded there in whole batches, with the instruction tokens looked up there too.

    >>> images = ResidentImages.from_files(files, device="cuda")           # decoded once: one uint8 tensor
    >>> batches = DeviceBatches(images, bank, crop=128, batch_size=256, p_mismatch=0.25, seed=0)
    >>> batch = batches.batch(step)      # on the device: "lq", "gt" in [-1, 1], the instruction's "tokens" and
    ...                                  # "bank_index", the applied "spec_index", "mismatch" flags

The same samples as ``SyntheticDegradationDataset`` with an ``InstructionBank`` (a bank spec per sample, a fresh
realisation of it, a share of non-matching instructions whose target is the input), made by
``defusion.degradations.batched`` instead of a CPU worker per image. A batch is a function of (seed, step)
only, so a resumed run continues with the batches it would have seen. Nothing here waits for the device: the
host draws indices and parameters with numpy and sends them with pinned, non-blocking copies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import degradations as D
from ..degradations.batched import apply_batch, host_tensor
from ..ensemble import dihedral
from ..images import load_image
from .instruction_bank import InstructionBank


class ResidentImages:
    """Clean images as one zero-padded (N, H_max, W_max, 3) uint8 tensor on ``device`` with their sizes; grey
    images are repeated to three channels."""

    def __init__(self, images: Sequence[np.ndarray], device="cpu"):
        if len(images) == 0:
            raise ValueError("no images")
        arrays = []
        for i, img in enumerate(images):
            a = np.asarray(img)
            if a.dtype != np.uint8:
                raise ValueError(f"image {i} is {a.dtype}; ResidentImages holds uint8 images (from_files converts)")
            if a.ndim == 2:
                a = a[..., None]
            if a.ndim != 3 or a.shape[-1] not in (1, 3):
                raise ValueError(f"image {i} has shape {a.shape}; need H x W, H x W x 1 or H x W x 3")
            arrays.append(np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a)
        self.sizes = np.array([a.shape[:2] for a in arrays], dtype=np.int64)
        h, w = self.sizes.max(0)
        pack = np.zeros((len(arrays), h, w, 3), np.uint8)
        for i, a in enumerate(arrays):
            pack[i, : a.shape[0], : a.shape[1]] = a
        self.pixels = torch.from_numpy(pack).to(device)
        self.device = self.pixels.device

    @classmethod
    def from_files(cls, files: Sequence[str | Path], device="cpu") -> "ResidentImages":
        return cls([np.round(load_image(f) * 255).astype(np.uint8) for f in files], device)

    def __len__(self) -> int:
        return len(self.sizes)

    def nbytes(self) -> int:
        return self.pixels.numel()

    def crops(self, index: np.ndarray, top: np.ndarray, left: np.ndarray, size: int) -> torch.Tensor:
        """(B, 3, size, size) float32 crops in [0, 1], one gather on the device."""
        if np.any(top + size > self.sizes[index, 0]) or np.any(left + size > self.sizes[index, 1]):
            raise ValueError("a crop reaches outside its image")
        idx = host_tensor(np.stack([index, top, left]).tolist(), torch.long, self.device)
        r = torch.arange(size, device=self.device)
        ys = (idx[1].view(-1, 1, 1) + r.view(1, size, 1))
        xs = (idx[2].view(-1, 1, 1) + r.view(1, 1, size))
        return self.pixels[idx[0].view(-1, 1, 1), ys, xs].permute(0, 3, 1, 2).float().div_(255)


class DeviceBatches:
    """Restoration batches from resident clean images and an instruction bank (see the module)."""

    def __init__(self, images: ResidentImages, bank: InstructionBank, crop: int, batch_size: int,
                 p_mismatch: float = 0.0, seed: int = 0):  # fmt: skip
        if batch_size < 1 or crop < 8:
            raise ValueError(f"need batch_size >= 1 and crop >= 8, got {batch_size} and {crop}")
        if not 0.0 <= p_mismatch <= 1.0:
            raise ValueError(f"p_mismatch must be in [0, 1], got {p_mismatch}")
        usable = np.nonzero((images.sizes >= crop).all(1))[0]
        if len(usable) == 0:
            raise ValueError(f"no image is at least {crop} x {crop}")
        self.images, self.bank, self.crop, self.batch_size = images, bank, crop, batch_size
        self.p_mismatch, self.seed, self.usable = p_mismatch, seed, usable
        self.device = images.device
        kinds = [frozenset(s.name for s in spec.steps) for spec in bank.specs]
        # the bank entries that share no kind with each entry (a non-matching instruction for it)
        self.mismatch_options = [np.array([j for j, o in enumerate(kinds) if not (o & k)], dtype=np.int64) for k in kinds]
        self.modes = [np.array(D.ensemble_symmetry(spec)[0], dtype=np.int64) for spec in bank.specs]
        self.generator = torch.Generator(device=self.device)

    def batch(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, step, 11])
        self.generator.manual_seed(int(rng.integers(2**62)))
        b, c = self.batch_size, self.crop
        index = self.usable[rng.integers(len(self.usable), size=b)]
        h, w = self.images.sizes[index].T
        top = (rng.random(b) * (h - c + 1)).astype(np.int64)
        left = (rng.random(b) * (w - c + 1)).astype(np.int64)
        bank_index = rng.integers(len(self.bank), size=b)
        mode = np.array([m[rng.integers(len(m))] for m in (self.modes[i] for i in bank_index)])
        shown = bank_index.copy()
        mismatch = np.zeros(b, dtype=bool)
        for i in np.nonzero(rng.random(b) < self.p_mismatch)[0]:
            options = self.mismatch_options[bank_index[i]]
            if len(options):
                shown[i], mismatch[i] = options[rng.integers(len(options))], True

        gt = self.images.crops(index, top, left, c)
        for m in np.unique(mode):
            if m:
                sel = host_tensor(np.nonzero(mode == m)[0].tolist(), torch.long, self.device)
                gt.index_copy_(0, sel, dihedral(gt.index_select(0, sel), int(m)))
        lq = apply_batch(gt, [self.bank.specs[i] for i in bank_index], self.generator)
        flags = host_tensor(mismatch.tolist(), torch.bool, self.device)
        gt = torch.where(flags.view(-1, 1, 1, 1), lq, gt)  # a non-matching instruction leaves the image alone
        shown_t = host_tensor(shown.tolist(), torch.long, self.device)
        # in [-1, 1], as the datasets' items
        return {"lq": lq * 2 - 1, "gt": gt * 2 - 1, "bank_index": shown_t, "mismatch": flags,
                "spec_index": host_tensor(bank_index.tolist(), torch.long, self.device),
                "tokens": self.bank.lookup(shown_t, self.device)}  # fmt: skip
