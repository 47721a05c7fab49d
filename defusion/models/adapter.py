"""The Visual Instruction Adapter: decoupled cross-attention from U-Net features to degradation tokens.

IP-Adapter style (Defusion Sec. 3.3): every cross-attention layer (``attn2``) of the U-Net gets a second
attention over the degradation tokens, with the same query and its own key/value projections, added to the
text cross-attention with a scale given per call (default ``config.scale``):

    out = Attn(q, K_text, V_text) + scale * Attn(q, K_ip(z), V_ip(z)),    z = code_proj(tokens)

The text branch is kept, so an optional text instruction still works. The new ``to_k_ip`` / ``to_v_ip`` start as
copies of the layer's own ``to_k`` / ``to_v``. All new weights live in this component (so they are saved with it,
not inside the U-Net); ``attach(unet)`` installs processors that use them (``DefusionDenoiser`` does, once).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn


class DegradationAttnProcessor(nn.Module):
    """Decoupled cross-attention (IP-Adapter style) whose token k/v projections belong to the adapter.

    ``encoder_hidden_states`` is ``(text, [tokens])`` or ``(text, [tokens], scale)``: the query attends to the text
    with the layer's own ``to_k`` / ``to_v`` and to the degradation tokens with ``to_k_ip`` / ``to_v_ip``, and
    ``out = to_out(Attn(q, text) + scale * Attn(q, tokens))``. ``scale`` is a float or a (B,) tensor given with
    each call (``DefusionDenoiser`` passes it), so nothing about a call stays on the processor. A plain tensor
    (no tuple) is text only. Computes what diffusers' ``IPAdapterAttnProcessor2_0`` computes for one adapter.
    """

    def __init__(self, to_k_ip: nn.Linear, to_v_ip: nn.Linear):
        super().__init__()
        # plain attributes, not submodules: the weights are saved with the adapter, not in unet.state_dict()
        object.__setattr__(self, "to_k_ip", to_k_ip)
        object.__setattr__(self, "to_v_ip", to_v_ip)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        if attention_mask is not None or attn.spatial_norm is not None or attn.group_norm is not None or hidden_states.ndim != 3:
            raise ValueError("DegradationAttnProcessor supports plain (B, L, C) cross-attention without masks")
        tokens, scale = None, 0.0
        if isinstance(encoder_hidden_states, tuple):
            text, ip, *rest = encoder_hidden_states
            tokens, scale = ip[0], (rest[0] if rest else 1.0)
        else:
            text = encoder_hidden_states
        b = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        head_dim = query.shape[-1] // attn.heads

        def heads(x):
            return x.view(b, -1, attn.heads, head_dim).transpose(1, 2)

        query = heads(query)
        out = F.scaled_dot_product_attention(query, heads(attn.to_k(text)), heads(attn.to_v(text)))
        if tokens is not None:
            ip_out = F.scaled_dot_product_attention(query, heads(self.to_k_ip(tokens)), heads(self.to_v_ip(tokens)))
            if isinstance(scale, torch.Tensor):
                scale = scale.to(ip_out.dtype).view(-1, 1, 1, 1)
            out = out + scale * ip_out
        out = out.transpose(1, 2).reshape(b, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def cross_attention_layers(unet: UNet2DConditionModel) -> list[str]:
    """Names of the U-Net's cross-attention processors (``...attn2.processor``), in a stable order."""
    return [n for n in unet.attn_processors if n.endswith("attn2.processor")]


class VisualInstructionAdapter(ModelMixin, ConfigMixin):
    """Args:
    token_dim: dimension of the degradation tokens (the tokenizer's embedding, 256).
    cross_attention_dim: the U-Net's ``cross_attention_dim``.
    layer_names: the U-Net's ``attn2`` processor names (``cross_attention_layers(unet)``).
    hidden_sizes: the inner dimension of each of those layers.
    scale: the default scale of the degradation branch (a call may give another: ``DefusionDenoiser``).
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
        """Install the decoupled cross-attention processors on ``unet`` (self-attention keeps the default).
        ``DefusionDenoiser`` does this once when it is built; nothing else needs to."""
        names = list(self.config.layer_names)
        if cross_attention_layers(unet) != names:
            raise ValueError("this adapter was built for a U-Net with other cross-attention layers")
        by_name = dict(zip(names, zip(self.to_k_ip, self.to_v_ip)))
        unet.set_attn_processor(
            {n: DegradationAttnProcessor(*by_name[n]) if n in by_name else AttnProcessor2_0() for n in unet.attn_processors}
        )
