"""IQAEmbedding: one quality embedding per image, for ClearAIR's quality guidance ("how degraded").

The reference takes the last hidden state of an MLLM IQA model (DeQA-Score, 4096-d) at the final prompt
position. That model is 8B parameters and not available offline, so the backend is pluggable:

* ``"identifier"`` (default, offline): a small learned no-reference regressor, our ``DegradationIdentifier``
  (trained on synthetic data to detect each degradation and regress its severity): its pooled features with the
  presence probabilities and severities, ``2 * channels[-1] + 2 * K`` values;
* ``"perceiver"``: a ``QualityPerceiver``'s image feature and its terrible / mediocre / excellent probabilities;
* ``"cache"``: precomputed embeddings (for example MLLM hidden states computed elsewhere) from a safetensors
  file or dict, looked up by key (``keys=`` at call time);
* ``MLLMQualityEmbedder``: a local transformers image-text-to-text model (LLaVA-style, loaded with
  ``AutoProcessor`` + ``AutoModelForImageTextToText``): the last layer's hidden state at the final prompt position
  after the reference's question, i.e. the state that predicts the quality word. DeQA-Score itself is built on
  mPLUG-Owl2, whose code is not part of transformers; compute its embeddings with its own code and use the cache;
* any callable ``images (B, 3, H, W) in [-1, 1] -> (B, D)``.

Embeddings are computed without gradients and returned as float32.
"""

from __future__ import annotations

from pathlib import Path

import torch


IQA_QUESTION = "How would you rate the quality of this image?"
IQA_ANSWER_PREFIX = "The quality of the image is"


class MLLMQualityEmbedder:
    """Callable: images -> (B, hidden) last-layer hidden state at the last prompt token of a local MLLM."""

    def __init__(self, model, processor, prompt: str | None = None):
        self.model, self.processor = model.eval(), processor
        self.model.requires_grad_(False)
        if prompt is None:
            image_token = getattr(processor, "image_token", "<image>")
            prompt = f"USER: {IQA_QUESTION}\n{image_token}\nASSISTANT: {IQA_ANSWER_PREFIX}"
        self.prompt = prompt

    @classmethod
    def from_pretrained(cls, path, prompt: str | None = None, dtype=None) -> "MLLMQualityEmbedder":
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        return cls(model, AutoProcessor.from_pretrained(path), prompt)

    @property
    def dim(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "text_config", cfg).hidden_size)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        import numpy as np
        import PIL.Image

        arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        pil = [PIL.Image.fromarray(np.ascontiguousarray(a)) for a in arr]
        inputs = self.processor(images=pil, text=[self.prompt] * len(pil), return_tensors="pt", padding=True)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        hidden = self.model(**inputs, output_hidden_states=True).hidden_states[-1]  # (B, L, D)
        mask = inputs["attention_mask"]
        last = (mask * torch.arange(mask.shape[1], device=device)).argmax(dim=1)  # last real token (any padding side)
        return hidden[torch.arange(len(pil), device=device), last].float()


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
        elif isinstance(backend, MLLMQualityEmbedder):
            self.kind = "mllm"
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
        if self.kind == "mllm":
            return self.backend.dim
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
