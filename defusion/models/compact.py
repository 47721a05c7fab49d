"""Compact weight files for the shipped models: int8 per output channel, dequantized when loaded.

A shipped model folder may hold ``diffusion_pytorch_model.int8.safetensors`` instead of the standard
``diffusion_pytorch_model.safetensors``. In it, every floating-point weight of at least ``MIN_NUMEL`` elements and
two or more dimensions (convolution and linear weights) is stored as int8 ``q`` with one float32 scale per output
channel (``w ~ q * scale``, symmetric, ``scale = max|w| / 127`` over the channel); everything else (biases,
norms, embeddings' small tables) stays as saved. Half the bytes of fp16; measured on the harness it changes the
shipped models' PSNR by less than 0.05 dB (the model cards give the figures).

A shipped folder may also hold ``shared_weights.json`` (``{"folder": "../../defusion-small/identifier"}``) instead of
a weight file: the same component ships in two pipelines once, and ``from_pretrained`` reads the weights from that
folder (relative to this one); the config (settings such as thresholds) stays this folder's own.

``CompactWeightsMixin.from_pretrained`` loads such a folder (and any standard one, through diffusers), so a
pipeline's ``from_pretrained`` needs nothing special. Saving is always standard (``save_pretrained``);
``compact_folder`` turns a saved component folder into the compact form (what ``train/export_pipeline.py`` does
for a release).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

COMPACT_FILE = "diffusion_pytorch_model.int8.safetensors"
STANDARD_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
SHARED_FILE = "shared_weights.json"
SCALE = ".__int8_scale__"  # key suffix of a quantized weight's per-channel scales
MIN_NUMEL = 4096


def quantize_state_dict(state: dict[str, torch.Tensor], min_numel: int = MIN_NUMEL, keep: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """int8 weights with per-output-channel scales for the large matrices / kernels; other tensors, and those whose
    key starts with one of ``keep`` (layers too sensitive to rounding), as they are."""
    out = {}
    for key, w in state.items():
        if key.endswith(SCALE):
            raise ValueError(f"state dict key {key!r} ends with the reserved suffix {SCALE!r}")
        if w.is_floating_point() and w.ndim >= 2 and w.numel() >= min_numel and not key.startswith(tuple(keep)):
            w32 = w.detach().float().cpu()
            scale = w32.abs().flatten(1).amax(dim=1).clamp_min(1e-12) / 127.0
            q = torch.round(w32 / scale.view(-1, *[1] * (w.ndim - 1))).clamp_(-127, 127).to(torch.int8)
            out[key], out[key + SCALE] = q.contiguous(), scale.contiguous()
        else:
            out[key] = w.detach().cpu().contiguous()
    return out


def dequantize_state_dict(stored: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The inverse of ``quantize_state_dict`` (up to rounding): every floating tensor in ``dtype``."""
    out = {}
    for key, t in stored.items():
        if key.endswith(SCALE):
            continue
        scale = stored.get(key + SCALE)
        if scale is not None:
            if t.dtype != torch.int8 or scale.shape != t.shape[:1]:
                raise ValueError(f"compact weight {key!r}: expected int8 with {t.shape[0]} scales")
            t = t.float() * scale.float().view(-1, *[1] * (t.ndim - 1))
        out[key] = t.to(dtype) if t.is_floating_point() else t
    return out


def compact_folder(folder, keep: tuple[str, ...] = ()) -> dict:
    """Rewrite a saved component folder (config.json + diffusion_pytorch_model.safetensors) in the compact form;
    returns the sizes before and after (bytes)."""
    folder = Path(folder)
    src = folder / STANDARD_FILES[0]
    if not src.is_file():
        raise FileNotFoundError(f"{folder} holds no {STANDARD_FILES[0]}")
    before = src.stat().st_size
    tmp = folder / (COMPACT_FILE + ".tmp")
    save_file(quantize_state_dict(load_file(str(src)), keep=keep), str(tmp), metadata={"format": "pt", "defusion": "int8-per-channel"})
    os.replace(tmp, folder / COMPACT_FILE)
    src.unlink()
    return {"before": before, "after": (folder / COMPACT_FILE).stat().st_size}


class CompactWeightsMixin:
    """Lets ``from_pretrained`` read a folder whose weights are in the compact int8 form (see the module)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        folder = Path(str(pretrained_model_name_or_path)) / (kwargs.get("subfolder") or "")
        if (folder / SHARED_FILE).is_file() and not any((folder / n).is_file() for n in (*STANDARD_FILES, COMPACT_FILE)):
            target = (folder / json.loads((folder / SHARED_FILE).read_text())["folder"]).resolve()
            donor = cls.from_pretrained(target, *args, **{k: v for k, v in kwargs.items() if k != "subfolder"})
            model = cls.from_config(cls.load_config(folder))  # this folder's settings (thresholds, say), those weights
            model.load_state_dict(donor.state_dict())
            model.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
            return model.to(donor.dtype).eval()
        if (folder / COMPACT_FILE).is_file() and not any((folder / n).is_file() for n in STANDARD_FILES):
            dtype = kwargs.get("torch_dtype") or kwargs.get("dtype") or torch.float32
            model = cls.from_config(cls.load_config(folder))
            missing, unexpected = model.load_state_dict(dequantize_state_dict(load_file(str(folder / COMPACT_FILE))), strict=False)
            if missing or unexpected:
                raise ValueError(f"{folder / COMPACT_FILE} does not fit {cls.__name__}: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}")  # fmt: skip
            model.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
            return model.to(dtype).eval()
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
