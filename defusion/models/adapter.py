"""The Visual Instruction Adapter: decoupled cross-attention from U-Net features to degradation tokens.

IP-Adapter style (Defusion Sec. 3.3): every cross-attention layer (``attn2``) of the U-Net gets a second
attention over the degradation tokens, with the same query and its own key/value projections, added to the
text cross-attention with a per-layer scale:

    out = Attn(q, K_text, V_text) + scale_l * Attn(q, K_ip(z), V_ip(z)),    z = code_proj(tokens)

The text branch is kept, so an optional text instruction still works. The new ``to_k_ip`` / ``to_v_ip`` start as
copies of the layer's own ``to_k`` / ``to_v``. All new weights live in this component (so they are saved with it,
not inside the U-Net); ``attach(unet)`` installs processors that use them. The processors are diffusers'
``IPAdapterAttnProcessor2_0`` with references to this module's linears.
"""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
from torch import nn


class DegradationAttnProcessor(IPAdapterAttnProcessor2_0):
    """``IPAdapterAttnProcessor2_0`` whose k/v projections belong to the adapter (not registered in the U-Net)."""

    def __init__(self, to_k_ip: nn.Linear, to_v_ip: nn.Linear, scale: float = 1.0):
        nn.Module.__init__(self)
        self.hidden_size, self.cross_attention_dim = to_k_ip.out_features, to_k_ip.in_features
        self.num_tokens = (0,)
        self.scale = [scale]
        object.__setattr__(self, "to_k_ip", [to_k_ip])  # plain lists: not part of unet.state_dict()
        object.__setattr__(self, "to_v_ip", [to_v_ip])


def cross_attention_layers(unet: UNet2DConditionModel) -> list[str]:
    """Names of the U-Net's cross-attention processors (``...attn2.processor``), in a stable order."""
    return [n for n in unet.attn_processors if n.endswith("attn2.processor")]


class VisualInstructionAdapter(ModelMixin, ConfigMixin):
    """Args:
    token_dim: dimension of the degradation tokens (the tokenizer's embedding, 256).
    cross_attention_dim: the U-Net's ``cross_attention_dim``.
    layer_names: the U-Net's ``attn2`` processor names (``cross_attention_layers(unet)``).
    hidden_sizes: the inner dimension of each of those layers.
    scale: the initial per-layer scale of the degradation branch.
    """

    @register_to_config
    def __init__(
        self,
        token_dim: int = 256,
        cross_attention_dim: int = 128,
        layer_names: Sequence[str] = (),
        hidden_sizes: Sequence[int] = (),
        scale: float = 1.0,
    ):
        super().__init__()
        if len(layer_names) != len(hidden_sizes):
            raise ValueError("layer_names and hidden_sizes must have the same length")
        self.code_proj = nn.Sequential(nn.Linear(token_dim, cross_attention_dim), nn.LayerNorm(cross_attention_dim))
        self.to_k_ip = nn.ModuleList([nn.Linear(cross_attention_dim, h, bias=False) for h in hidden_sizes])
        self.to_v_ip = nn.ModuleList([nn.Linear(cross_attention_dim, h, bias=False) for h in hidden_sizes])
        self.layer_scales = [float(scale)] * len(hidden_sizes)
        object.__setattr__(self, "_attached", None)  # the U-Net we installed processors on (not a submodule)

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, token_dim: int = 256, scale: float = 1.0) -> "VisualInstructionAdapter":
        """An adapter sized for ``unet``, with ``to_k_ip`` / ``to_v_ip`` copied from each layer's ``to_k`` / ``to_v``."""
        names = cross_attention_layers(unet)
        if not names:
            raise ValueError("the U-Net has no cross-attention layers: use CrossAttn* blocks for the adapter")
        modules = dict(unet.named_modules())
        attns = [modules[n.rsplit(".processor", 1)[0]] for n in names]
        adapter = cls(token_dim, unet.config.cross_attention_dim, names, [a.to_k.out_features for a in attns], scale)
        with torch.no_grad():
            for a, k, v in zip(attns, adapter.to_k_ip, adapter.to_v_ip):
                k.weight.copy_(a.to_k.weight)
                v.weight.copy_(a.to_v.weight)
        return adapter

    @classmethod
    def from_preset(cls, name: str) -> "VisualInstructionAdapter":
        """The adapter that goes with ``DefusionUNet.from_preset(name)`` and the tokenizer preset of that name."""
        from .tokenizer import PRESETS as TOKENIZER_PRESETS
        from .unet import DefusionUNet

        return cls.from_unet(DefusionUNet.from_preset(name), token_dim=TOKENIZER_PRESETS[name]["vq_embed_dim"])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, token_dim) degradation tokens -> (B, N, cross_attention_dim)."""
        if tokens.ndim != 3 or tokens.shape[-1] != self.config.token_dim:
            raise ValueError(f"expected tokens of shape (B, N, {self.config.token_dim}), got {tuple(tokens.shape)}")
        return self.code_proj(tokens)

    def attach(self, unet: UNet2DConditionModel) -> None:
        """Install the decoupled cross-attention processors on ``unet`` (self-attention keeps the default)."""
        names = list(self.config.layer_names)
        if cross_attention_layers(unet) != names:
            raise ValueError("this adapter was built for a U-Net with other cross-attention layers")
        procs = {}
        by_name = dict(zip(names, zip(self.to_k_ip, self.to_v_ip, self.layer_scales)))
        for n in unet.attn_processors:
            if n in by_name:
                k, v, s = by_name[n]
                procs[n] = DegradationAttnProcessor(k, v, s)
            else:
                procs[n] = AttnProcessor2_0()
        unet.set_attn_processor(procs)
        object.__setattr__(self, "_attached", unet)

    def set_scale(self, scale: float | Sequence[float]) -> None:
        """Set the degradation branch's scale (one float, or one per layer); 0 switches the branch off."""
        scales = [float(scale)] * len(self.layer_scales) if isinstance(scale, (int, float)) else [float(s) for s in scale]
        if len(scales) != len(self.layer_scales):
            raise ValueError(f"expected {len(self.layer_scales)} scales, got {len(scales)}")
        self.layer_scales = scales
        if len(set(scales)) == 1:  # persisted with save_pretrained
            self.register_to_config(scale=scales[0])
        if self._attached is not None:
            procs = self._attached.attn_processors
            for name, s in zip(self.config.layer_names, scales):
                procs[name].scale = [s]
