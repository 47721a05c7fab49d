"""The degradation tokenizer: a VQ autoencoder on visual instructions (Defusion, Sec. 3.1), and its
PatchGAN discriminator.

The encoder, decoder and codebook are diffusers' ``VQModel``; this class adds what the paper needs on top:

* the VQ-VAE commitment loss (beta on the commitment term; diffusers' default ``legacy=True`` quantizer puts it
  on the codebook term, so the quantizer is replaced by a ``legacy=False`` one with identical parameters);
* deterministic preprocessing: centre crop to a square, resize to ``input_size`` (224 in the paper);
* ``encode_codes`` -> (indices, code embeddings), ``tokenize`` -> residual tokens
  codes(instruction) - codes(null ground), shape (B, N, D) (the paper: "subtract their embeddings");
* codebook usage statistics and dead-code restarts (small VQ models collapse without them).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin, VQModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import VectorQuantizer
from torch import nn

from .compact import CompactWeightsMixin
from .presets import PresetMixin

PRESETS = {
    # tests: 2 levels, runs in milliseconds
    "tiny": dict(
        block_out_channels=(8, 16), layers_per_block=1, latent_channels=8, vq_embed_dim=8,
        num_vq_embeddings=32, norm_num_groups=4, input_size=32,
    ),
    # what ships: the paper's 5 levels and 14 x 14 tokens of 256-d, narrower and one res block a level
    "small": dict(
        block_out_channels=(32, 64, 64, 128, 128), layers_per_block=1, latent_channels=256, vq_embed_dim=256,
        num_vq_embeddings=512, norm_num_groups=32, input_size=224,
    ),
    # the paper (taming VQGAN f16): channels [128,128,256,256,512], 2 res blocks, 1024 x 256 codebook
    "paper": dict(
        block_out_channels=(128, 128, 256, 256, 512), layers_per_block=2, latent_channels=256, vq_embed_dim=256,
        num_vq_embeddings=1024, norm_num_groups=32, input_size=224,
    ),
}  # fmt: skip


def _to_batch(images, input_size: int | None = None) -> torch.Tensor:
    """Accept a (B, 3, H, W) / (3, H, W) tensor in [-1, 1], a float HWC array in [0, 1], a VisualInstruction
    or a list of those; return a float tensor (B, 3, H, W) in [-1, 1]."""
    from ..instructions import VisualInstruction

    if isinstance(images, VisualInstruction):
        return images.to_tensor()
    if isinstance(images, np.ndarray):
        from ..images import check_image

        img = check_image(images, channels=(3,))
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None] * 2 - 1
    if isinstance(images, (list, tuple)):
        parts = [_to_batch(x) for x in images]
        if input_size is not None:
            parts = [center_resize(p, input_size) for p in parts]
        return torch.cat(parts)
    if isinstance(images, torch.Tensor):
        x = images[None] if images.ndim == 3 else images
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN or infinite values")
        return x
    raise TypeError(f"unsupported image type {type(images).__name__}")


def center_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Deterministic centre crop to a square, then (antialiased bilinear) resize to ``size``."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[..., top : top + s, left : left + s]
    if s != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class DegradationTokenizer(CompactWeightsMixin, ModelMixin, ConfigMixin, PresetMixin):
    """VQ autoencoder whose encoder turns visual instructions into degradation tokens.

    Build a named configuration with ``DegradationTokenizer.from_preset("small")``; save and load with
    ``save_pretrained`` / ``from_pretrained`` (safetensors).
    """

    PRESETS = PRESETS

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        block_out_channels: Sequence[int] = (128, 128, 256, 256, 512),
        layers_per_block: int = 2,
        latent_channels: int = 256,
        vq_embed_dim: int = 256,
        num_vq_embeddings: int = 1024,
        norm_num_groups: int = 32,
        input_size: int = 224,
        commitment_beta: float = 0.25,
        usage_decay: float = 0.99,
        with_decoder: bool = True,
    ):
        super().__init__()
        n = len(block_out_channels)
        self.vq = VQModel(
            in_channels=in_channels,
            out_channels=in_channels,
            down_block_types=("DownEncoderBlock2D",) * (n - 1) + ("AttnDownEncoderBlock2D",),
            up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * (n - 1),
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            vq_embed_dim=vq_embed_dim,
            num_vq_embeddings=num_vq_embeddings,
            norm_num_groups=norm_num_groups,
            sample_size=input_size,
        )
        # VQ-VAE form: beta on the commitment term (same parameter names, so checkpoints stay compatible)
        self.vq.quantize = VectorQuantizer(num_vq_embeddings, vq_embed_dim, beta=commitment_beta, legacy=False)
        # running (EMA) usage of each code, for statistics and dead-code restarts; not saved with the weights
        self.register_buffer("code_usage", torch.full((num_vq_embeddings,), 1.0 / num_vq_embeddings), persistent=False)
        if not with_decoder:
            # tokenizing needs only the encoder and the codebook: a shipped (inference) tokenizer leaves the decoder
            # out, which only training the tokenizer itself uses (60 % of the weights of the small preset)
            self.vq.decoder = None
            self.vq.post_quant_conv = None

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def num_tokens(self) -> int:
        return (self.config.input_size // self.downsample_factor) ** 2

    @property
    def token_dim(self) -> int:
        return self.config.vq_embed_dim

    def preprocess(self, images) -> torch.Tensor:
        """Any supported image input -> (B, 3, input_size, input_size) in [-1, 1] on the model's device."""
        x = _to_batch(images, self.config.input_size)
        x = center_resize(x, self.config.input_size)
        return x.to(device=self.device, dtype=self.dtype)

    # ---- encoding -----------------------------------------------------------------------------
    def quantize(self, latents: torch.Tensor):
        """(B, D, h, w) latents -> (quantized latents, VQ loss, indices (B, h*w))."""
        zq, loss, (_, _, idx) = self.vq.quantize(latents)
        return zq, loss, idx.view(latents.shape[0], -1)

    def encode_codes(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, N) and their codebook embeddings (B, N, D)."""
        x = self.preprocess(images)
        h = self.vq.encode(x).latents
        _, _, idx = self.quantize(h)
        return idx, self.vq.quantize.embedding(idx)

    def tokenize(self, instruction, null=None) -> torch.Tensor:
        """Residual degradation tokens codes(instruction) - codes(null ground), shape (B, N, D).

        ``instruction`` is a ``VisualInstruction`` (its own null ground is used), a list of them, or a batch of
        instruction images with ``null`` the matching batch of clean grounds.
        """
        from ..instructions import VisualInstruction

        if null is None:
            insts = [instruction] if isinstance(instruction, VisualInstruction) else instruction
            if not isinstance(insts, (list, tuple)) or not all(isinstance(i, VisualInstruction) for i in insts):
                raise ValueError("tokenize needs VisualInstruction(s), or instruction images together with null=")
            images = [i.image for i in insts]
            null = [i.null for i in insts]
            instruction = images
        a = self.preprocess(instruction)
        b = self.preprocess(null)
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"{a.shape[0]} instructions but {b.shape[0]} null grounds")
        _, emb = self.encode_codes(torch.cat([a, b]))
        return emb[: a.shape[0]] - emb[a.shape[0] :]

    # ---- decoding -----------------------------------------------------------------------------
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Token ids (B, N) or quantized latents (B, D, h, w) -> images (B, 3, H, W) in [-1, 1] (unclipped)."""
        if codes.dtype in (torch.int32, torch.int64):
            b, n = codes.shape
            side = int(round(n**0.5))
            if side * side != n:
                raise ValueError(f"{n} tokens do not form a square grid")
            zq = self.vq.quantize.embedding(codes).view(b, side, side, -1).permute(0, 3, 1, 2)
        else:
            zq = codes
        self._require_decoder()
        return self.vq.decoder(self.vq.post_quant_conv(zq), None)

    def forward(self, images, return_dict: bool = False):
        """Reconstruct: returns (reconstruction in [-1, 1], VQ loss, indices (B, N))."""
        x = images if isinstance(images, torch.Tensor) and images.ndim == 4 else self.preprocess(images)
        h = self.vq.encode(x).latents
        zq, vq_loss, idx = self.quantize(h)
        if self.training:
            self._track_usage(idx)
        self._require_decoder()
        rec = self.vq.decoder(self.vq.post_quant_conv(zq), None)
        return rec, vq_loss, idx

    def without_decoder(self) -> "DegradationTokenizer":
        """A copy that only tokenizes: the same encoder and codebook, no decoder (what ships)."""
        lean = type(self).from_config(self.config, with_decoder=False)
        lean.load_state_dict(self.state_dict(), strict=False)
        return lean.to(device=self.device, dtype=self.dtype).eval()

    def _require_decoder(self) -> None:
        if self.vq.decoder is None:
            raise ValueError("this DegradationTokenizer was saved without its decoder (with_decoder=False, as shipped: "
                             "it only tokenizes); reconstructing or training needs a tokenizer with one")

    def reconstruct(self, images) -> torch.Tensor:
        """Preprocess, encode, quantize and decode; (B, 3, S, S) in [-1, 1], clipped."""
        with torch.no_grad():
            rec, _, _ = self.forward(self.preprocess(images))
        return rec.clamp(-1, 1)

    # ---- codebook health ----------------------------------------------------------------------
    @torch.no_grad()
    def _track_usage(self, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx.flatten(), minlength=self.config.num_vq_embeddings).float()
        d = self.config.usage_decay
        self.code_usage.mul_(d).add_(counts / counts.sum(), alpha=1 - d)

    @staticmethod
    def usage_stats(idx: torch.Tensor, num_codes: int) -> dict:
        """Perplexity (exp of the code entropy) and the fraction of codes used in ``idx``."""
        counts = torch.bincount(idx.flatten(), minlength=num_codes).float()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return {"perplexity": float(entropy.exp()), "codes_used": float((counts > 0).float().mean())}

    @torch.no_grad()
    def restart_dead_codes(self, latents: torch.Tensor, threshold: float = 1e-3, generator=None) -> int:
        """Re-seed codes whose running usage fell below ``threshold`` / num_codes with random encoder outputs
        from ``latents`` (B, D, h, w), plus a little noise. Returns how many codes were restarted."""
        n = self.config.num_vq_embeddings
        dead = torch.nonzero(self.code_usage < threshold / n).flatten()
        if dead.numel() == 0:
            return 0
        z = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).float()
        pick = torch.randint(0, z.shape[0], (dead.numel(),), generator=generator, device="cpu").to(z.device)
        new = z[pick] + 0.01 * z.std() * torch.randn(dead.numel(), z.shape[1], generator=generator, device="cpu").to(z.device)
        weight = self.vq.quantize.embedding.weight
        weight.data[dead] = new.to(weight.dtype)
        self.code_usage[dead] = 1.0 / n
        return int(dead.numel())

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output conv weight, for the adaptive GAN weight."""
        self._require_decoder()
        return self.vq.decoder.conv_out.weight


class PatchGANDiscriminator(ModelMixin, ConfigMixin):
    """The pix2pix / taming NLayer PatchGAN: a 4x4 conv stack that scores overlapping patches with raw logits.

    ``num_layers`` stride-2 blocks (channels doubling up to 8x, BatchNorm + LeakyReLU 0.2), one stride-1 block,
    and a 1-channel output conv; no sigmoid (the hinge loss works on logits). Weights init N(0, 0.02), as taming.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for i in range(1, num_layers + 1):
            prev, mult = mult, min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [
                nn.Conv2d(base_channels * prev, base_channels * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(base_channels * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(base_channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
