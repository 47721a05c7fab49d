"""IQAEmbedding: one quality embedding per image, for ClearAIR's quality guidance ("how degraded").

The reference takes the last hidden state of an MLLM IQA model (DeQA-Score, 4096-d) at the final prompt
position. That model is 8B parameters and not available offline, so the backend is pluggable:

* ``"identifier"`` (default, offline): a small learned no-reference regressor, our ``DegradationIdentifier``
  (trained on synthetic data to detect each degradation and regress its severity): its pooled features with the
  presence probabilities and severities, ``2 * channels[-1] + 2 * K`` values;
* ``"perceiver"``: a ``QualityPerceiver``'s image feature and its terrible / mediocre / excellent probabilities;
* ``"cache"``: precomputed embeddings (for example MLLM hidden states computed elsewhere) from a safetensors
  file or dict, looked up by key (``keys=`` at call time);
* any callable ``images (B, 3, H, W) in [-1, 1] -> (B, D)``, e.g. a wrapper around a local MLLM.

Embeddings are computed without gradients and returned as float32.
"""

from __future__ import annotations

from pathlib import Path

import torch


class IQAEmbedding:
    def __init__(self, backend, dim: int | None = None):
        self.backend = backend
        self._dim = dim
        self.cache = None
        if isinstance(backend, (str, Path, dict)):
            self.cache = _load_cache(backend)
            self.kind = "cache"
        elif _is_identifier(backend):
            self.kind = "identifier"
        elif _is_perceiver(backend):
            self.kind = "perceiver"
        elif callable(backend):
            self.kind = "callable"
        else:
            raise TypeError(f"unsupported IQA backend {type(backend).__name__}; see defusion.perception.iqa")

    @property
    def dim(self) -> int:
        if self._dim is not None:
            return self._dim
        if self.kind == "identifier":
            return 2 * self.backend.config.channels[-1] + 2 * len(self.backend.kinds)
        if self.kind == "perceiver":
            return int(self.backend.text_features().shape[1]) + len(self.backend.classes)
        if self.kind == "cache":
            return int(next(iter(self.cache.values())).numel())
        raise ValueError("give dim= for a callable backend")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | None = None, keys=None) -> torch.Tensor:
        if self.kind == "cache":
            if keys is None:
                raise ValueError("the cache backend needs keys= (one per image)")
            missing = [k for k in keys if k not in self.cache]
            if missing:
                raise KeyError(f"no cached IQA embedding for {missing[:3]}")
            return torch.stack([self.cache[k].float().flatten() for k in keys])
        if images is None or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError("expected images of shape (B, 3, H, W) in [-1, 1]")
        if self.kind == "identifier":
            net = self.backend
            x = images.to(net.device, net.dtype)
            logits, sev = net(x)
            return torch.cat([net.pooled(x), torch.sigmoid(logits), sev], dim=1).float()
        if self.kind == "perceiver":
            return torch.cat([self.backend.image_features(images), self.backend.predict(images)], dim=1).float()
        return self.backend(images).float()




def _is_identifier(backend) -> bool:
    from .identifier import DegradationIdentifier

    return isinstance(backend, DegradationIdentifier)


def _is_perceiver(backend) -> bool:
    from .quality import QualityPerceiver

    return isinstance(backend, QualityPerceiver)


def _load_cache(source) -> dict[str, torch.Tensor]:
    if isinstance(source, dict):
        return {str(k): torch.as_tensor(v) for k, v in source.items()}
    from safetensors.torch import load_file

    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"IQA embedding cache {path} not found (a safetensors file of key -> embedding)")
    return load_file(str(path))
