"""ClearAIR (AAAI 2026): a Restormer-style network whose seven levels are guided by quality, semantics and the
degradation ("how", "where", "what").

Backbone: bias-free LayerNorm (eps 1e-6), blocks (3, 5, 6, 8) at dim, 2dim, 4dim, 8dim; decoder level 1 keeps
2dim (concatenation without reduction); refinement num_blocks[0] blocks; global residual.

Each of the 7 levels (encoders 1-3, latent, decoders 3-1) is a ``ConditionedLevel``: floor(n/2) blocks, then
QGM -> SCA -> DAM, then the rest.

* QGM (quality): the image's quality embedding goes through a shared Linear(quality_dim -> 256) and an adapter
  (256 -> 192, GELU, 192 -> 192), then a per-level Linear(192 -> C); gamma and beta are each a Linear(C -> C);
  x <- LN(x) (1 + gamma) + beta.
* SCA (semantics): up to 16 region masks; MAP broadcasts each region's mean feature back to it (overlaps add,
  uncovered pixels get zero); k, v come from a 1x1 conv of a 1x1 ``sem_proj`` of MAP(x); q from a 1x1 conv of
  LN(x); 4 heads; the attention output is added to x. The reference attends pixel to pixel over HW x HW (65,536^2
  logits per head at 256 px). Because MAP(x) is piecewise constant, every pixel with the same mask-membership
  pattern has the same key and value, so attention over all pixels equals attention over the G distinct
  patterns with a log(pixel count) bias on the logits: exactly the same result with a G-token memory
  (``RegionAttention``; tested against the pixel-to-pixel form). Masks are dropped independently with
  probability ``mask_dropout`` (0.2) in training.
* DAM (degradation): 5 learnable 192-d prompts mixed by softmax(MLP(degradation embedding)) and passed through an
  MLP give F_p; a channel mask sigmoid(MLP(F_p)) gates x_hat = 1x1(LN(x)); a single content token (Linear of
  the content embedding to k, v) is attended by every pixel. With one key, a softmax over keys is exactly 1, so
  the attention output is v at every pixel; the reference's softmax over the *spatial* axis (which shrinks the
  output as 1/HW and makes it depend on resolution) is not reproduced, and the query projection, which cannot
  change the result, is left out. out = x + 1x1(concat[1x1(v), mask * x_hat]).

Inputs besides the image: ``quality`` (B, quality_dim), ``masks`` (B, M, H, W) at the input resolution,
``degradation`` (B, degradation_dim), ``content`` (B, content_dim). In the reference they come from DeQA-Score,
SAM2 and DA-CLIP; here from ``defusion.perception`` (``IQAEmbedding``, ``RegionMasks``, the
``DegradationIdentifier`` and ``SemanticEncoder``), computed outside the model and kept out of its state dict.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .presets import PresetMixin
from .restormer import Downsample, LayerNorm2d, Upsample, blocks

EPS = 1e-6


def region_tokens(x: torch.Tensor, masks: torch.Tensor):
    """Per image: the distinct mask-membership patterns, their MAP features and pixel counts.

    x: (C, H, W); masks: (M, H, W) in {0, 1}. Returns (tokens (G, C), counts (G,), inverse (H*W,)) where token g
    is the sum of the mean features of the regions in pattern g (zero for pixels in no region)."""
    c = x.shape[0]
    m = masks.flatten(1) > 0.5  # (M, HW)
    area = m.sum(dim=1).clamp(min=1).to(x.dtype)
    means = (m.to(x.dtype) @ x.reshape(c, -1).t()) / area[:, None]  # (M, C)
    patterns, inverse, counts = torch.unique(m.t(), dim=0, return_inverse=True, return_counts=True)
    return patterns.to(x.dtype) @ means, counts, inverse


class RegionAttention(nn.Module):
    """SCA: pixels (queries) attend to the region-pattern tokens of MAP(x) (keys/values) with a log-count bias.
    Disjoint masks give at most M + 1 patterns; heavily overlapping ones can give many, so queries run in chunks
    of ``query_chunk`` pixels."""

    query_chunk = 4096

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = LayerNorm2d(dim, bias_free=True, eps=EPS)
        self.q = nn.Conv2d(dim, dim, 1, bias=False)
        self.sem_proj = nn.Conv2d(dim, dim, 1, bias=False)
        self.kv = nn.Conv2d(dim, 2 * dim, 1, bias=False)

    def forward(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = c // self.heads
        q = self.q(self.norm(x)).reshape(b, self.heads, d, h * w).transpose(-2, -1)  # (B, h, HW, d)
        out = []
        for i in range(b):
            tokens, counts, inverse = region_tokens(x[i], masks[i])
            sem = self.sem_proj(tokens.t()[None, :, :, None])  # 1x1 convs on (1, C, G, 1)
            k, v = self.kv(sem)[0, :, :, 0].reshape(2, self.heads, d, -1).transpose(-2, -1)  # (h, G, d) each
            bias = counts.to(q.dtype).log()
            rows = []
            for qc in q[i].split(self.query_chunk, dim=1):  # bounded memory even for many distinct patterns
                rows.append((qc @ k.transpose(-2, -1) / math.sqrt(d) + bias).softmax(dim=-1) @ v)
            out.append(torch.cat(rows, dim=1).transpose(-2, -1).reshape(c, h, w))
        return x + torch.stack(out)

    def pixel_attention(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The reference's HW x HW form (only for tests on small inputs)."""
        b, c, h, w = x.shape
        d = c // self.heads
        m = (masks > 0.5).to(x.dtype).flatten(2)  # (B, M, HW)
        means = (m @ x.flatten(2).transpose(1, 2)) / m.sum(-1, keepdim=True).clamp(min=1)  # (B, M, C)
        mapped = (m.transpose(1, 2) @ means).transpose(1, 2).reshape(b, c, h, w)
        q = self.q(self.norm(x)).reshape(b, self.heads, d, h * w).transpose(-2, -1)
        k, v = self.kv(self.sem_proj(mapped)).reshape(b, 2, self.heads, d, h * w).transpose(-2, -1).unbind(1)
        attn = (q @ k.transpose(-2, -1) / math.sqrt(d)).softmax(dim=-1)
        return x + (attn @ v).transpose(-2, -1).reshape(b, c, h, w)


class QGM(nn.Module):
    def __init__(self, dim: int, quality_width: int = 192):
        super().__init__()
        self.norm = LayerNorm2d(dim, bias_free=True, eps=EPS)
        self.level = nn.Linear(quality_width, dim)
        self.gamma, self.beta = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, fq: torch.Tensor) -> torch.Tensor:
        f = self.level(fq)
        return self.norm(x) * (1 + self.gamma(f)[:, :, None, None]) + self.beta(f)[:, :, None, None]


class DAM(nn.Module):
    def __init__(self, dim: int, content_dim: int, prompt_width: int = 192):
        super().__init__()
        self.norm = LayerNorm2d(dim, bias_free=True, eps=EPS)
        self.proj_in = nn.Conv2d(dim, dim, 1, bias=False)
        self.kv = nn.Linear(content_dim, 2 * dim)
        self.attn_out = nn.Conv2d(dim, dim, 1, bias=False)
        self.channel_mask = nn.Sequential(nn.Linear(prompt_width, dim), nn.GELU(), nn.Linear(dim, dim))
        self.fuse = nn.Conv2d(2 * dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, content: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
        xh = self.proj_in(self.norm(x))
        _, v = self.kv(content).chunk(2, dim=1)  # one content token: softmax over one key is 1, so out = v
        attended = self.attn_out(v[:, :, None, None].expand_as(xh))
        gated = torch.sigmoid(self.channel_mask(fp))[:, :, None, None] * xh
        return x + self.fuse(torch.cat([attended, gated], dim=1))


class ConditionedLevel(nn.Module):
    def __init__(self, n: int, dim: int, heads: int, content_dim: int, ffn: float):
        super().__init__()
        self.pre = blocks(n // 2, dim, heads, ffn, False, True, EPS)
        self.qgm = QGM(dim)
        self.sca = RegionAttention(dim, heads=4 if dim % 4 == 0 else 1)
        self.dam = DAM(dim, content_dim)
        self.post = blocks(n - n // 2, dim, heads, ffn, False, True, EPS)

    def forward(self, x, fq, masks, content, fp):
        x = self.pre(x)
        x = self.qgm(x, fq)
        x = self.sca(x, F.interpolate(masks, size=x.shape[-2:], mode="nearest"))
        x = self.dam(x, content, fp)
        return self.post(x)


PRESETS = {
    "tiny": dict(dim=8, num_blocks=(1, 1, 1, 2), heads=(1, 1, 2, 2), quality_dim=58, degradation_dim=26, content_dim=32),
    "small": dict(dim=24, num_blocks=(2, 3, 3, 4), heads=(1, 2, 4, 8), quality_dim=410, degradation_dim=26, content_dim=32),
    "paper": dict(dim=48, num_blocks=(3, 5, 6, 8), heads=(1, 2, 4, 8), quality_dim=4096, degradation_dim=512, content_dim=512),
}


class ClearAIR(ModelMixin, ConfigMixin, PresetMixin):
    """See the module docstring. The ``small``/``tiny`` presets take the offline perception modules' sizes
    (identifier IQA embedding 410 / 58, identifier probabilities + severities 26, fallback DINOv2 CLS 32); the
    ``paper`` preset the reference's (DeQA-Score 4096, DA-CLIP 512 / 512)."""

    PRESETS = PRESETS

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (3, 5, 6, 8),
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        quality_dim: int = 4096,
        degradation_dim: int = 512,
        content_dim: int = 512,
        num_prompts: int = 5,
        max_regions: int = 16,
        mask_dropout: float = 0.2,
    ):
        super().__init__()
        nb, hd, ffn = list(num_blocks), list(heads), ffn_expansion_factor
        self.quality_proj = nn.Linear(quality_dim, 256)
        self.quality_adapter = nn.Sequential(nn.Linear(256, 192), nn.GELU(), nn.Linear(192, 192))
        self.prompts = nn.Parameter(torch.randn(num_prompts, 192) * 0.02)
        self.prompt_weights = nn.Sequential(nn.Linear(degradation_dim, 512), nn.GELU(), nn.Linear(512, num_prompts))
        self.prompt_mlp = nn.Sequential(nn.Linear(192, 192), nn.GELU(), nn.Linear(192, 192))

        def level(n, c, h):
            return ConditionedLevel(n, c, h, content_dim, ffn)

        self.patch_embed = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)
        self.encoder_level1 = level(nb[0], dim, hd[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = level(nb[1], dim * 2, hd[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = level(nb[2], dim * 4, hd[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = level(nb[3], dim * 8, hd[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=False)
        self.decoder_level3 = level(nb[2], dim * 4, hd[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=False)
        self.decoder_level2 = level(nb[1], dim * 2, hd[1])
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = level(nb[0], dim * 2, hd[0])
        self.refinement = blocks(nb[0], dim * 2, hd[0], ffn, False, True, EPS)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=False)

    downsample_factor = 8
    conditions = ("quality", "masks", "degradation", "content")
    spatial_conditions = ("masks",)

    def _check(self, x, quality, masks, degradation, content):
        b = x.shape[0]
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be a multiple of 8; pad it first")
        cfg = self.config
        for name, t, d in (("quality", quality, cfg.quality_dim), ("degradation", degradation, cfg.degradation_dim),
                           ("content", content, cfg.content_dim)):  # fmt: skip
            if t is None or t.shape != (b, d):
                raise ValueError(f"{name} must be (B, {d}), got {None if t is None else tuple(t.shape)}")
        if masks is None or masks.ndim != 4 or masks.shape[0] != b or masks.shape[-2:] != x.shape[-2:]:
            got = None if masks is None else tuple(masks.shape)
            raise ValueError(f"masks must be (B, M, H, W) at the input size {tuple(x.shape[-2:])}, got {got}")

    def forward(self, x, quality=None, masks=None, degradation=None, content=None, **kwargs) -> torch.Tensor:
        self._check(x, quality, masks, degradation, content)
        masks = masks.to(x.dtype)
        if self.training and self.config.mask_dropout > 0:
            keep = torch.rand(masks.shape[:2], device=x.device) >= self.config.mask_dropout
            masks = masks * keep[:, :, None, None].to(x.dtype)
        fq = self.quality_adapter(self.quality_proj(quality.to(x.dtype)))
        weights = self.prompt_weights(degradation.to(x.dtype)).softmax(dim=-1)
        fp = self.prompt_mlp(weights @ self.prompts)
        cond = (fq, masks, content.to(x.dtype), fp)
        e1 = self.encoder_level1(self.patch_embed(x), *cond)
        e2 = self.encoder_level2(self.down1_2(e1), *cond)
        e3 = self.encoder_level3(self.down2_3(e2), *cond)
        lat = self.latent(self.down3_4(e3), *cond)
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1)), *cond)
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)), *cond)
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1), *cond)
        return self.output(self.refinement(d1)) + x
