"""A bank of degradation specs with their instruction tokens, computed once before training.

Tokenizing a 224 px visual instruction costs more than a training step of the ``small`` Defusion on a CPU
(about 0.12 s per instruction on 2 cores). The bank draws ``N`` specs from the training distribution, renders each
instruction on a cached ground, tokenizes it once and stores the residual tokens (fp16). The restoration dataset
then degrades each crop with a spec drawn from the bank (same kind and strength; a fresh random realisation of
the noise, rain streaks, ...), and the training loop looks its tokens up by index.

Saved as ``tokens.safetensors`` + ``specs.json`` in a folder, so a resumed run reuses the same bank.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import degradations as D
from ..instructions import VisualInstruction
from .restoration import cached_ground, to_tensor


class InstructionBank:
    """``specs`` (N degradation specs) and ``tokens`` (N, num_tokens, token_dim) from one tokenizer."""

    def __init__(self, specs: list[D.Degradation], tokens: torch.Tensor):
        if len(specs) == 0:
            raise ValueError("an instruction bank needs at least one spec")
        if tokens.ndim != 3 or tokens.shape[0] != len(specs):
            raise ValueError(f"tokens must be ({len(specs)}, L, D), got {tuple(tokens.shape)}")
        self.specs, self.tokens = list(specs), tokens

    def __len__(self) -> int:
        return len(self.specs)

    @classmethod
    @torch.no_grad()
    def build(cls, tokenizer, num: int, kinds=None, max_mix: int = 1, p_single: float = 1.0, weights=None,
              severity=None, seed: int = 0, ground: str = "pool", ground_cache: int = 256, batch_size: int = 32,
              progress: bool = False, degradation: str | None = None) -> "InstructionBank":  # fmt: skip
        """Draw ``num`` specs with ``degradations.sample`` (or ``degradations.sample_named(degradation)``) and
        tokenize their instructions."""
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        size = max(64, tokenizer.config.input_size)
        rng = np.random.default_rng([seed, 7])
        if degradation is not None:
            specs = [D.sample_named(degradation, rng) for _ in range(num)]
        else:
            specs = [D.sample(rng, kinds, max_mix, p_single, severity, weights) for _ in range(num)]
        device = next(tokenizer.parameters()).device
        out = []
        starts = range(0, num, batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="instruction bank")
        for start in starts:
            images, nulls = [], []
            for i in range(start, min(start + batch_size, num)):
                g = int(rng.integers(2**31))
                grd = cached_ground(ground, g % ground_cache, size) if ground_cache else ground
                inst = VisualInstruction.from_spec(specs[i], seed=g, size=size, ground=grd)
                images.append(to_tensor(inst.image))
                nulls.append(to_tensor(inst.null))
            tokens = tokenizer.tokenize(torch.stack(images).to(device), null=torch.stack(nulls).to(device))
            out.append(tokens.half().cpu())
        return cls(specs, torch.cat(out))

    def save(self, folder) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"tokens": self.tokens.contiguous()}, str(folder / "tokens.safetensors"))
        (folder / "specs.json").write_text(json.dumps([s.to_dict() for s in self.specs]))

    @classmethod
    def load(cls, folder) -> "InstructionBank":
        folder = Path(folder)
        missing = [n for n in ("tokens.safetensors", "specs.json") if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"instruction bank {folder} lacks {missing}")
        specs = [D.from_dict(d) for d in json.loads((folder / "specs.json").read_text())]
        return cls(specs, load_file(str(folder / "tokens.safetensors"))["tokens"])

    def lookup(self, index: torch.Tensor, device=None) -> torch.Tensor:
        """float32 tokens for a batch of bank indices."""
        return self.tokens[index.long().cpu()].to(device=device, dtype=torch.float32)
