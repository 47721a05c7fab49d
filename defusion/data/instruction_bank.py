"""A bank of degradation specs with their instruction tokens, computed once before training.

Tokenizing a 224 px visual instruction costs more than a training step of the ``small`` Defusion on a CPU
(about 0.12 s per instruction on 2 cores). The bank draws ``N`` specs from the training distribution, renders each
instruction on a cached ground, tokenizes it once and stores its codebook ids (those of the instruction and of
its null ground) with the tokenizer's codebook: a few MB where the tokens themselves took 100. The restoration data
then degrades each crop with a spec drawn from the bank (same kind and strength; a fresh random realisation of
the noise, rain streaks, ...), and the training loop looks its tokens up by index, rebuilt on the device as
codebook[ids] - codebook[null ids] (exactly what ``DegradationTokenizer.tokenize`` returns).

Saved as ``codes.safetensors`` + ``specs.json`` in a folder, so a resumed run reuses the same bank (a folder with
the older ``tokens.safetensors`` still loads).
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
    """``specs`` (N degradation specs) with ``ids`` (N, 2, num_tokens): the codebook ids of each instruction and
    of its null ground, and ``codebook`` (K, token_dim), the tokenizer's; or, from an older bank, ``tokens``."""

    def __init__(self, specs: list[D.Degradation], ids: torch.Tensor | None = None, codebook: torch.Tensor | None = None,
                 tokens: torch.Tensor | None = None):  # fmt: skip
        if len(specs) == 0:
            raise ValueError("an instruction bank needs at least one spec")
        if tokens is not None:
            if tokens.ndim != 3 or tokens.shape[0] != len(specs):
                raise ValueError(f"tokens must be ({len(specs)}, L, D), got {tuple(tokens.shape)}")
        elif ids is None or codebook is None or ids.ndim != 3 or ids.shape[:2] != (len(specs), 2) or codebook.ndim != 2:
            raise ValueError(f"ids must be ({len(specs)}, 2, L) with a (K, D) codebook")
        elif int(ids.max()) >= codebook.shape[0] or int(ids.min()) < 0:
            raise ValueError(f"ids must index the {codebook.shape[0]} codes of the codebook")
        self.specs, self.ids, self.codebook, self._tokens = list(specs), ids, codebook, tokens
        self._on: dict = {}

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def token_shape(self) -> tuple[int, int]:
        if self._tokens is not None:
            return tuple(self._tokens.shape[1:])
        return self.ids.shape[2], self.codebook.shape[1]

    @property
    def tokens(self) -> torch.Tensor:
        """All tokens (N, num_tokens, token_dim), float32."""
        return self.lookup(torch.arange(len(self)))

    @classmethod
    @torch.no_grad()
    def build(cls, tokenizer, num: int, kinds=None, max_mix: int = 1, p_single: float = 1.0, weights=None,
              severity=None, seed: int = 0, ground: str = "pool", ground_cache: int = 256, batch_size: int = 32,
              progress: bool = False, degradation: str | None = None, params=None) -> "InstructionBank":  # fmt: skip
        """Draw ``num`` specs with ``degradations.sample`` (``params``: its parameter draws; or
        ``degradations.sample_named(degradation)``) and tokenize their instructions."""
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        size = max(64, tokenizer.config.input_size)
        rng = np.random.default_rng([seed, 7])
        if degradation is not None:
            specs = [D.sample_named(degradation, rng) for _ in range(num)]
        else:
            specs = [D.sample(rng, kinds, max_mix, p_single, severity, weights, params) for _ in range(num)]
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
            k = len(images)
            idx, _ = tokenizer.encode_codes(torch.cat([torch.stack(images), torch.stack(nulls)]).to(device))
            out.append(torch.stack([idx[:k], idx[k:]], 1).to(torch.int16).cpu())
        codebook = tokenizer.vq.quantize.embedding.weight.detach().float().cpu().clone()
        return cls(specs, ids=torch.cat(out), codebook=codebook)

    def save(self, folder) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._tokens is not None:
            save_file({"tokens": self._tokens.contiguous()}, str(folder / "tokens.safetensors"))
        else:
            save_file({"ids": self.ids.contiguous(), "codebook": self.codebook.contiguous()}, str(folder / "codes.safetensors"))
        (folder / "specs.json").write_text(json.dumps([s.to_dict() for s in self.specs]))

    @classmethod
    def load(cls, folder) -> "InstructionBank":
        folder = Path(folder)
        data = next((n for n in ("codes.safetensors", "tokens.safetensors") if (folder / n).is_file()), None)
        if data is None or not (folder / "specs.json").is_file():
            raise FileNotFoundError(f"instruction bank {folder} lacks codes.safetensors (or tokens.safetensors) or specs.json")
        specs = [D.from_dict(d) for d in json.loads((folder / "specs.json").read_text())]
        stored = load_file(str(folder / data))
        if "tokens" in stored:
            return cls(specs, tokens=stored["tokens"])
        return cls(specs, ids=stored["ids"], codebook=stored["codebook"])

    def lookup(self, index: torch.Tensor, device=None) -> torch.Tensor:
        """float32 tokens for a batch of bank indices, built on ``device`` (default: the index's) from the codes,
        which are copied there once."""
        device = torch.device(device) if device is not None else index.device
        if device not in self._on:
            parts = (self._tokens,) if self._tokens is not None else (self.ids.long(), self.codebook.float())
            self._on[device] = tuple(p.to(device) for p in parts)
        index = index.to(device).long()
        if self._tokens is not None:
            return self._on[device][0][index].float()
        ids, codebook = self._on[device]
        pair = ids[index]  # (B, 2, L)
        return codebook[pair[:, 0]] - codebook[pair[:, 1]]
