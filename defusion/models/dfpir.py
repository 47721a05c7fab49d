"""DFPIR (Tian et al., CVPR 2025): Restormer with Degradation-Guided Perturbation Blocks (DGPB).

A DGPB sits on the latent and on each of the three encoder skips, and replaces that feature:

* degradation guidance: a 512-d degradation prompt code (a CLIP text embedding) is projected to 2C scores whose
  descending order is a channel permutation;
* channel perturbation: 1x1 conv C -> 2C, the channels reordered by that permutation, 1x1 conv 2C -> C (Q);
* attention perturbation: channel attention with q from Q and k, v from the feature; per query only the top
  ``gamma`` share (0.9) of the logits survive the softmax; the result is scaled by a learned scalar (init 0.2)
  and projected; then a GDFN with a residual. There is no residual from the block input.

On the prompt projection: in the reference code the two linear layers that map the prompt to the scores get no
gradient (a permutation is not differentiable and the sorted values are never used), so they stay at their
random initialisation. Here that is explicit: the projection is a **seeded, frozen** pair of linear layers
(``requires_grad=False``, seeded by ``permutation_seed``), so every prompt maps to a fixed pseudo-random channel
permutation, exactly as in the reference, but reproducibly and without pretending to train it. They are still
parameters of the model, so the ``paper`` preset counts about 31.10M parameters, as the reference does.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .compact import CompactWeightsMixin
from .presets import PresetMixin
from .restormer import GDFN, LayerNorm2d, RestormerEncoderMixin, Upsample, blocks


class PerturbedAttention(nn.Module):
    """Channel attention with q from the perturbed feature Q and k, v from the feature F; top-k sparsified."""

    def __init__(self, dim: int, heads: int, gamma: float = 0.9, bias: bool = False):
        super().__init__()
        self.heads, self.gamma = heads, gamma
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=bias)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=bias)
        self.scale = nn.Parameter(torch.tensor(0.2))
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, qf: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        q = self.q_dwconv(self.q(qf))
        k, v = self.kv_dwconv(self.kv(f)).chunk(2, dim=1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        logits = q @ k.transpose(-2, -1) * self.temperature
        keep = max(1, int(logits.shape[-1] * self.gamma))
        kth = logits.topk(keep, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
        out = logits.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w) * self.scale)


class DGPB(nn.Module):
    """Degradation-Guided Perturbation Block for a C-channel feature and a ``prompt_dim`` prompt code."""

    def __init__(self, dim: int, heads: int, prompt_dim: int = 512, gamma: float = 0.9, ffn: float = 2.66,
                 bias: bool = False, generator: torch.Generator | None = None):  # fmt: skip
        super().__init__()
        self.guide = nn.Sequential(nn.Linear(prompt_dim, prompt_dim), nn.Linear(prompt_dim, dim * 2))
        for layer in self.guide:  # seeded and frozen (see the module docstring)
            bound = 1.0 / layer.in_features**0.5
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
            layer.requires_grad_(False)
        self.expand = nn.Conv2d(dim, dim * 2, 1)
        self.fuse = nn.Conv2d(dim * 2, dim, 1)
        self.norm_q = LayerNorm2d(dim)
        self.norm_f = LayerNorm2d(dim)
        self.attn = PerturbedAttention(dim, heads, gamma, bias)
        self.norm_ffn = LayerNorm2d(dim)
        self.ffn = GDFN(dim, ffn, bias)

    def permutation(self, code: torch.Tensor) -> torch.Tensor:
        """(B, prompt_dim) prompt codes -> (B, 2C) channel orders (descending scores)."""
        return self.guide(code.float()).argsort(dim=1, descending=True)

    def forward(self, f: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        perm = self.permutation(code)
        e = self.expand(f)
        e = torch.gather(e, 1, perm[:, :, None, None].expand(-1, -1, *e.shape[-2:]))
        q = self.fuse(e)
        fa = self.attn(self.norm_q(q), self.norm_f(f))
        return fa + self.ffn(self.norm_ffn(fa))


PRESETS = {
    "tiny": dict(dim=8, num_blocks=(1, 1, 1, 1), heads=(1, 1, 2, 2), num_refinement_blocks=1, prompt_dim=16),
    "small": dict(dim=24, num_blocks=(2, 3, 3, 4), heads=(1, 2, 4, 8), num_refinement_blocks=2),
    "paper": dict(dim=48, num_blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8), num_refinement_blocks=4),
}


class DFPIR(CompactWeightsMixin, RestormerEncoderMixin, ModelMixin, ConfigMixin, PresetMixin):
    """Restormer + 4 DGPBs (latent and the three skips). ``forward(x, prompt_code)`` with ``prompt_code`` the
    (B, prompt_dim) text code of the degradation prompt (``defusion.perception.DegradationPromptEncoder``)."""

    PRESETS = PRESETS

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        heads: Sequence[int] = (1, 2, 4, 8),
        num_refinement_blocks: int = 4,
        ffn_expansion_factor: float = 2.66,
        prompt_dim: int = 512,
        gamma: float = 0.9,
        permutation_seed: int = 0,
        bias: bool = False,
    ):
        super().__init__()
        nb, hd, ffn = list(num_blocks), list(heads), ffn_expansion_factor
        g = torch.Generator().manual_seed(permutation_seed)
        self._build_encoder(in_channels, dim, nb, hd, ffn, bias, False)
        self.dgpb_latent = DGPB(dim * 8, hd[3], prompt_dim, gamma, ffn, bias, g)
        self.dgpb_level3 = DGPB(dim * 4, hd[2], prompt_dim, gamma, ffn, bias, g)
        self.dgpb_level2 = DGPB(dim * 2, hd[1], prompt_dim, gamma, ffn, bias, g)
        self.dgpb_level1 = DGPB(dim, hd[0], prompt_dim, gamma, ffn, bias, g)
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = blocks(nb[2], dim * 4, hd[2], ffn, bias, False)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = blocks(nb[1], dim * 2, hd[1], ffn, bias, False)
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = blocks(nb[0], dim * 2, hd[0], ffn, bias, False)
        self.refinement = blocks(num_refinement_blocks, dim * 2, hd[0], ffn, bias, False)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    downsample_factor = 8
    needs_prompt = True

    def forward(self, x: torch.Tensor, prompt_code: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if prompt_code is None:
            raise ValueError("DFPIR needs prompt_code, the (B, prompt_dim) code of the degradation prompt")
        if prompt_code.ndim != 2 or prompt_code.shape[1] != self.config.prompt_dim:
            raise ValueError(f"prompt_code must be (B, {self.config.prompt_dim}), got {tuple(prompt_code.shape)}")
        code = prompt_code.expand(x.shape[0], -1) if prompt_code.shape[0] == 1 else prompt_code
        e1, e2, e3, lat = self.encode(x)
        lat = self.dgpb_latent(lat, code)
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), self.dgpb_level3(e3, code)], 1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), self.dgpb_level2(e2, code)], 1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), self.dgpb_level1(e1, code)], 1))
        return self.output(self.refinement(d1)) + x
