"""Conditioner: the perception outputs a restorer asks for, computed from frozen modules outside its state dict.

A restorer lists what it needs in ``conditions`` (``PerceiveIR``: ``semantic``; ``ClearAIR``: ``quality``,
``masks``, ``degradation``, ``content``). The same code serves ``RestorerPipeline`` and ``train_restorer.py``:

* ``semantic``: DINOv2 CLS features of the restorer's ``semantic_layers`` (``SemanticEncoder``);
* ``content``: the CLS feature of DINOv2's last layer (stands in for DA-CLIP's content feature);
* ``quality``: ``IQAEmbedding`` (default: the identifier backend);
* ``degradation``: the identifier's presence probabilities and severities, (B, 2K) (stands in for DA-CLIP's
  degradation feature; it drives ClearAIR's task prompts);
* ``masks``: ``RegionMasks`` at the input resolution (SAM or SLIC).
"""

from __future__ import annotations

import torch

KNOWN = ("semantic", "content", "quality", "degradation", "masks")


class Conditioner:
    def __init__(self, semantic_encoder=None, identifier=None, region_masks=None, iqa=None):
        self.semantic_encoder, self.identifier, self.region_masks, self.iqa = semantic_encoder, identifier, region_masks, iqa

    def _need(self, what, module, name):
        if module is None:
            raise ValueError(f"the restorer needs {what!r}, which comes from a {name}; this pipeline/run has none")
        return module

    @torch.no_grad()
    def __call__(self, restorer, x: torch.Tensor) -> dict:
        """(B, 3, H, W) in [-1, 1] -> keyword arguments for ``restorer(x, **kwargs)``."""
        wanted = tuple(getattr(restorer, "conditions", ()))
        unknown = [w for w in wanted if w not in KNOWN]
        if unknown:
            raise ValueError(f"unknown conditions {unknown}; known: {KNOWN}")
        out = {}
        if "semantic" in wanted or "content" in wanted:
            enc = self._need("semantic", self.semantic_encoder, "SemanticEncoder (DINOv2)")
            layers = list(getattr(restorer.config, "semantic_layers", ())) if "semantic" in wanted else []
            last = enc.model.config.num_hidden_layers
            feats = enc.cls_features(x, layers + ([last] if "content" in wanted else []))
            if "semantic" in wanted:
                out["semantic"] = feats[: len(layers)]
            if "content" in wanted:
                out["content"] = feats[-1]
        if "quality" in wanted:
            if self.iqa is None:
                from .iqa import IQAEmbedding

                self.iqa = IQAEmbedding(self._need("quality", self.identifier, "DegradationIdentifier or IQAEmbedding"))
            out["quality"] = self.iqa(x).to(x.device)
        if "degradation" in wanted:
            net = self._need("degradation", self.identifier, "DegradationIdentifier")
            logits, sev = net(x.to(net.device, net.dtype))
            out["degradation"] = torch.cat([torch.sigmoid(logits), sev], dim=1).float().to(x.device)
        if "masks" in wanted:
            if self.region_masks is None:
                from .regions import RegionMasks

                self.region_masks = RegionMasks()
            out["masks"] = self.region_masks(x)
        return out
