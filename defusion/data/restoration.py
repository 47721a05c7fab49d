"""Restoration datasets: every sample carries its degradation spec, so the matching visual instruction is
built for it.

* ``SyntheticDegradationDataset``: clean images (a folder, a list of files or a Hugging Face ``datasets``
  image dataset) degraded on the fly by random specs from the registry;
* ``PairedFolderDataset``: real (lq, gt) pairs in the common layouts (``lq/gt``, ``input/target``,
  ``rainy/gt`` with ``rain-N``/``norain-N`` names, ``hazy/clear`` or ``hazy/original`` with ``ID_A_beta`` names,
  ``low/high``, ``blur/sharp``); the instruction shows the dataset's declared kind at a random severity;
* ``MixtureDataset``: datasets with per-dataset repeat factors (the papers' balancing).

Items: ``lq``, ``gt`` (3, crop, crop) in [-1, 1]; ``instruction``, ``null`` (3, S, S) in [-1, 1]; ``labels``
(multi-hot over the registry); ``spec`` (JSON). Training crops are random with a random dihedral transform (all 8,
including the identity; the reference loaders draw only 7); validation crops are central with no transform.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import degradations as D
from ..images import load_image
from ..instructions import VisualInstruction
from .instructions import multi_hot

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
PAIR_LAYOUTS = [("lq", "gt"), ("input", "target"), ("rainy", "gt"), ("hazy", "clear"), ("hazy", "original"),
                ("low", "high"), ("blur", "sharp")]  # fmt: skip


def paired_layout(root) -> tuple[str, str] | None:
    """The ``PAIR_LAYOUTS`` entry (lq folder, gt folder) that ``root`` has, or None for a folder of single images."""
    root = Path(root)
    return next(((a, b) for a, b in PAIR_LAYOUTS if (root / a).is_dir() and (root / b).is_dir()), None)


def list_images(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({sorted(IMAGE_EXTENSIONS)}) under {folder}")
    return files


def dihedral(img: np.ndarray, mode: int) -> np.ndarray:
    """One of the 8 rotations/flips of an HWC array (mode 0 is the identity)."""
    if mode >= 4:
        img = img[:, ::-1]
    return np.rot90(img, mode % 4)


def crop_pair(arrays: Sequence[np.ndarray], size: int, rng, train: bool) -> list[np.ndarray]:
    """The same random (train) or central (validation) crop of each array; reflect-pads images smaller than
    ``size``; applies one random dihedral transform in training."""
    h, w = arrays[0].shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        arrays = [np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="reflect" if ph < h and pw < w else "edge") for a in arrays]
        h, w = arrays[0].shape[:2]
    if train:
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    else:
        top, left = (h - size) // 2, (w - size) // 2
    out = [a[top : top + size, left : left + size] for a in arrays]
    if train:
        mode = int(rng.integers(0, 8))
        out = [dihedral(a, mode) for a in out]
    return [np.ascontiguousarray(a) for a in out]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1) * 2 - 1


@functools.lru_cache(maxsize=4096)
def cached_ground(kind: str, seed: int, size: int) -> np.ndarray:
    """A clean ground by (kind, seed, size); cached per worker process, read-only."""
    g = VisualInstruction.null_instruction(seed=seed, size=size, ground=kind).null
    g.setflags(write=False)
    return g


class _RestorationBase(Dataset):
    def __init__(self, crop: int, train: bool, seed: int, instruction_size: int, ground: str, instruction: bool,
                 ground_cache: int = 0):  # fmt: skip
        self.crop, self.train, self.seed = crop, train, seed
        self.instruction_size, self.ground, self.instruction = instruction_size, ground, instruction
        self.ground_cache = ground_cache
        self.names = D.names()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Training draws new crops / specs each epoch (same sequence for the same epoch and seed)."""
        self.epoch = epoch

    def _rng(self, index: int):
        return np.random.default_rng([self.seed, self.epoch if self.train else 0, index])

    def _item(self, lq, gt, spec, rng, shown=None, bank_index=None, mismatch: bool = False) -> dict:
        """``shown``: the spec the instruction shows (default ``spec``); ``bank_index``: its entry in an
        ``InstructionBank`` (then no instruction images are rendered; the training loop looks the tokens up)."""
        item = {"lq": to_tensor(lq), "gt": to_tensor(gt), "labels": multi_hot(spec, self.names),
                "spec": json.dumps(spec.to_dict() if spec is not None else None), "mismatch": bool(mismatch)}  # fmt: skip
        if bank_index is not None:
            item["bank_index"] = int(bank_index)
        elif self.instruction:
            seed = int(rng.integers(2**31))
            ground = self.ground
            if self.ground_cache:  # draw from a fixed set of grounds: rendering them dominates the data cost
                ground = cached_ground(self.ground, seed % self.ground_cache, self.instruction_size)
            inst = VisualInstruction.from_spec(shown if shown is not None else spec, seed=seed,
                                               size=self.instruction_size, ground=ground)
            item["instruction"], item["null"] = to_tensor(inst.image), to_tensor(inst.null)
        return item


class SyntheticDegradationDataset(_RestorationBase):
    """Clean images degraded on the fly.

    Args:
        source: a folder, a list of image paths, or a ``datasets.Dataset`` with an ``image`` column.
        kinds: registry names to draw from (default: all); ``max_mix`` / ``p_single`` control mixtures.
        severity: fixed severity, a ``(lo, hi)`` range, a dict of those per kind, or None for uniform in [0.1, 1]
            (see ``degradations.sample``).
        crop: training/validation crop size; instruction_size: the tokenizer's input size.
        instruction: build the visual instruction for each item (False for restorers that do not use one).
        ground_cache: if > 0, grounds come from a fixed set of this many (cached per worker) instead of a fresh
            ground per item; the degradation on them is still drawn per item.
        kind_weights: one positive weight per kind (more frequent kinds); None: uniform.
        bank_specs: the specs of an ``InstructionBank``: each item is degraded by a spec drawn from it and carries
            its ``bank_index`` instead of instruction images.
        p_mismatch: share of items whose instruction shows kinds the image does not have; their target is the
            input itself (an instruction that does not match leaves the image alone). ``mismatch`` flags them.
        degradation: a name string such as ``"jpeg15+noise10"``: every item is degraded by it
            (``degradations.sample_named``) instead of a spec drawn from ``kinds``.
        params: parameters drawn apart from the severity, e.g. ``{"low_light": {"noise": (0.1, 12, "log")}}``
            (see ``degradations.sample``).
    """

    def __init__(self, source, kinds=None, crop: int = 256, train: bool = True, seed: int = 0, max_mix: int = 1,
                 p_single: float = 1.0, severity=None, instruction_size: int = 224, ground: str = "pool",
                 instruction: bool = True, ground_cache: int = 0, kind_weights=None, bank_specs=None,
                 p_mismatch: float = 0.0, degradation: str | None = None, params=None):  # fmt: skip
        super().__init__(crop, train, seed, instruction_size, ground, instruction, ground_cache)
        if degradation is not None:
            kinds = [s.name for s in D.parse(degradation).steps]  # validates the names
        self.degradation = degradation
        if not 0.0 <= p_mismatch <= 1.0:
            raise ValueError(f"p_mismatch must be in [0, 1], got {p_mismatch}")
        if bank_specs is not None and len(bank_specs) == 0:
            raise ValueError("bank_specs is empty")
        self.kind_weights, self.p_mismatch = kind_weights, p_mismatch
        self.params = D.check_params(params) if params else None
        self.bank_specs = list(bank_specs) if bank_specs is not None else None
        self._bank_kinds = [frozenset(s.name for s in b.steps) for b in self.bank_specs] if self.bank_specs else None
        if isinstance(source, (str, Path)):
            self.source = list_images(source)
        elif isinstance(source, (list, tuple)):
            self.source = [Path(p) for p in source]
        else:
            if "image" not in getattr(source, "column_names", []):
                raise ValueError("a datasets.Dataset source needs an 'image' column")
            self.source = source
        if len(self.source) == 0:
            raise ValueError("the image source is empty")
        self.kinds = [D.get(k).name for k in (kinds or D.names())]
        self.max_mix, self.p_single, self.severity = max_mix, p_single, severity

    def __len__(self) -> int:
        return len(self.source)

    def clean(self, index: int) -> np.ndarray:
        item = self.source[index]
        if isinstance(item, Path):
            return load_image(item)
        from ..images import to_float_image

        return to_float_image(item["image"], rgb=True)

    def __getitem__(self, index: int) -> dict:
        # index >= len: repeat index // len of the same image, with its own crop and degradation (MixtureDataset)
        rng = self._rng(index)
        (gt,) = crop_pair([self.clean(index % len(self))], self.crop, rng, self.train)
        bank_index = None
        if self.bank_specs is not None:
            bank_index = int(rng.integers(len(self.bank_specs)))
            spec = self.bank_specs[bank_index]
        elif self.degradation is not None:
            spec = D.sample_named(self.degradation, rng)
        else:
            spec = D.sample(rng, self.kinds, self.max_mix, self.p_single, self.severity, self.kind_weights, self.params)
        lq = spec.apply(gt, rng)
        if self.p_mismatch and rng.random() < self.p_mismatch:
            shown, shown_index = self._mismatched(spec, rng)
            if shown is not None:
                return self._item(lq, lq, spec, rng, shown=shown, bank_index=shown_index, mismatch=True)
        return self._item(lq, gt, spec, rng, bank_index=bank_index)

    def _mismatched(self, spec, rng):
        """A spec (and bank index) sharing no kind with ``spec``; (None, None) when there is none."""
        applied = {s.name for s in spec.steps}
        if self.bank_specs is not None:
            options = [i for i, k in enumerate(self._bank_kinds) if not (k & applied)]
            if not options:
                return None, None
            i = int(options[int(rng.integers(len(options)))])
            return self.bank_specs[i], i
        others = [(k, w) for k, w in zip(self.kinds, self.kind_weights or [1.0] * len(self.kinds)) if k not in applied]
        if not others:
            return None, None
        kinds, weights = zip(*others)
        return D.sample(rng, list(kinds), self.max_mix, self.p_single, self.severity, list(weights), self.params), None


def _pair_key(stem: str, side: str) -> str:
    """Normalise file stems so pairs match across the common naming schemes."""
    if side == "lq":
        stem = re.sub(r"^rain-", "", stem)
        stem = re.sub(r"^(\d+)_[\d.]+_[\d.]+$", r"\1", stem)  # SOTS/OTS hazy: ID_A_beta -> ID
    else:
        stem = re.sub(r"^norain-", "", stem)
    return stem


class PairedFolderDataset(_RestorationBase):
    """Real (lq, gt) pairs from a folder in one of ``PAIR_LAYOUTS``; ``degradation`` names what the pairs show
    (e.g. ``"rain"``), used for the instruction (at a random severity) and the labels."""

    def __init__(self, root, degradation: str, crop: int = 256, train: bool = True, seed: int = 0,
                 instruction_size: int = 224, ground: str = "pool", instruction: bool = True,
                 ground_cache: int = 0):  # fmt: skip
        super().__init__(crop, train, seed, instruction_size, ground, instruction, ground_cache)
        root = Path(root)
        layout = paired_layout(root)
        if layout is None:
            raise FileNotFoundError(f"{root} has none of the paired layouts {[f'{a}/+{b}/' for a, b in PAIR_LAYOUTS]}")
        gts = {_pair_key(p.stem, "gt"): p for p in list_images(root / layout[1])}
        self.pairs = []
        for p in list_images(root / layout[0]):
            key = _pair_key(p.stem, "lq")
            if key in gts:
                self.pairs.append((p, gts[key]))
        if not self.pairs:
            raise FileNotFoundError(f"no lq/gt pairs with matching names under {root} ({layout[0]}/, {layout[1]}/)")
        D.parse(degradation)  # validates the names
        self.degradation = degradation

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        rng = self._rng(index)  # index >= len: a repeat of the same pair with its own crop (MixtureDataset)
        lq_path, gt_path = self.pairs[index % len(self.pairs)]
        lq, gt = load_image(lq_path), load_image(gt_path)
        if lq.shape != gt.shape:
            raise ValueError(f"{lq_path.name} {lq.shape} and {gt_path.name} {gt.shape} differ in size")
        lq, gt = crop_pair([lq, gt], self.crop, rng, self.train)
        return self._item(lq, gt, D.sample_named(self.degradation, rng), rng)


class MixtureDataset(Dataset):
    """Concatenate datasets, each repeated ``repeats[i]`` times per epoch (e.g. the PromptIR 3-task mixture
    repeats BSD400 noise x3 and Rain100L x120 so the tasks are balanced). Repeat r of item i is asked for as
    index ``r * len + i``, so each repeat draws its own crop and degradation rather than the same sample again."""

    def __init__(self, datasets: Sequence[Dataset], repeats: Sequence[int] | None = None):
        repeats = list(repeats or [1] * len(datasets))
        if len(repeats) != len(datasets) or any(r < 1 for r in repeats):
            raise ValueError("repeats must give one positive integer per dataset")
        self.datasets = list(datasets)
        self.index = [(d, k * len(ds) + i) for d, (ds, r) in enumerate(zip(datasets, repeats))
                      for k in range(r) for i in range(len(ds))]  # fmt: skip

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict:
        d, i = self.index[index]
        return self.datasets[d][i]

    def set_epoch(self, epoch: int) -> None:
        for ds in self.datasets:
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)
