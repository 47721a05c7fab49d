"""QualityPerceiver: Perceive-IR's stage-1 quality prompts (CoOp-style prompt learning on a frozen CLIP).

Three classes, "terrible" / "mediocre" / "excellent" (low / medium / high quality). Each class has its own 16
learnable context vectors of the text width, initialised N(0, 0.02) except the last slot, which starts as the
class word's token embedding. The prompt is [SOS] + context + [EOS, padding] (the suffix of a 16-"X" placeholder);
its text feature is the frozen text transformer's state at the EOS position times ``text_projection``. Image
features come from the frozen visual tower on a bicubic 224 resize with CLIP's mean and std. Logits are
``logit_scale.exp() * cos`` (CLIP's scale, about 100), trained with 3-way cross-entropy on (degraded, medium,
clean) triplets by ``train/train_quality_prompts.py``.

Only the context vectors are trained and saved (``save_prompts`` / ``load_prompts``, safetensors + JSON); the
CLIP comes from ``defusion.perception.clip.load_clip`` (a local open_clip folder or file, or a labelled random
stand-in).

The offline fallback differs in one way, on purpose: a random image tower maps every image to nearly the same
direction (cosine about 0.99 between any two images), so prompts alone cannot separate anything. With
``train_image_tower=True`` (the default when there are no CLIP weights) the random image tower is trained with the
prompts and saved with them; the backend string says so. With real CLIP weights the tower stays frozen, as in the
paper.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .clip import CLIP_MEAN, CLIP_STD, load_clip

QUALITY_CLASSES = ("terrible", "mediocre", "excellent")
PROMPTS_WEIGHTS = "quality_prompts.safetensors"
PROMPTS_CONFIG = "quality_prompts.json"


def clip_image_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> CLIP's input: bicubic resize to ``size`` and CLIP mean/std (differentiable)."""
    x = ((x.float() + 1) / 2).clamp(0, 1)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(CLIP_STD, device=x.device)[:, None, None]
    return (x - mean) / std


class QualityPerceiver(nn.Module):
    """Learned quality prompts on a frozen open_clip model.

    Args:
        clip_model: an open_clip ``CLIP`` (frozen here).
        n_ctx: context vectors per class (16).
        classes: class words; each must be a single BPE token.
        backend: a description of where the CLIP came from (kept in the saved prompts' JSON).
    """

    def __init__(self, clip_model, n_ctx: int = 16, classes=QUALITY_CLASSES, backend: str = "", seed: int = 0,
                 train_image_tower: bool = False):  # fmt: skip
        super().__init__()
        import open_clip

        self.clip = clip_model.eval()
        self.clip.requires_grad_(False)
        self.train_image_tower = train_image_tower
        if train_image_tower:
            self.clip.visual.requires_grad_(True)
            backend += " + image tower trained with the prompts"
        self.classes, self.n_ctx, self.backend = tuple(classes), n_ctx, backend
        ctx_len = clip_model.context_length
        if n_ctx + 2 > ctx_len:
            raise ValueError(f"n_ctx={n_ctx} does not fit the text context of {ctx_len}")
        emb = clip_model.token_embedding
        word_ids = []
        for c in self.classes:
            ids = open_clip.tokenize([c], context_length=ctx_len)[0]
            body = ids[1 : int(ids.argmax())]  # between SOS and EOS
            if len(body) != 1:
                raise ValueError(f"class word {c!r} must be one BPE token, got {len(body)}")
            word_ids.append(int(body[0]))
        placeholder = open_clip.tokenize([" ".join(["X"] * n_ctx)], context_length=ctx_len)
        with torch.no_grad():
            tokens = emb(placeholder.to(emb.weight.device))[0]
            words = emb(torch.tensor(word_ids, device=emb.weight.device))
        self.register_buffer("prefix", tokens[:1].clone(), persistent=False)  # SOS
        self.register_buffer("suffix", tokens[1 + n_ctx :].clone(), persistent=False)  # EOS + padding
        self.eos_position = 1 + n_ctx
        g = torch.Generator().manual_seed(seed)
        ctx = torch.randn(len(self.classes), n_ctx, emb.weight.shape[1], generator=g) * 0.02
        ctx[:, -1] = words.cpu()
        self.ctx = nn.Parameter(ctx.to(emb.weight.device))

    @classmethod
    def from_clip(cls, clip_path=None, device="cpu", **kwargs) -> "QualityPerceiver":
        """Build on ``load_clip(clip_path)`` (None: the random small stand-in, reported in ``backend``)."""
        model, backend = load_clip(clip_path, device=device)
        kwargs.setdefault("train_image_tower", clip_path is None)
        return cls(model, backend=backend, **kwargs)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [self.ctx] + (list(self.clip.visual.parameters()) if self.train_image_tower else [])

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # a frozen CLIP stays in eval mode while the prompts train
        if self.train_image_tower:
            self.clip.visual.train(mode)
        return self

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def text_features(self) -> torch.Tensor:
        """(n_classes, D) L2-normalised text features of the learned prompts."""
        n = len(self.classes)
        x = torch.cat([self.prefix.expand(n, -1, -1), self.ctx, self.suffix.expand(n, -1, -1)], dim=1)
        x = x + self.clip.positional_embedding
        x = self.clip.ln_final(self.clip.transformer(x, attn_mask=self.clip.attn_mask))
        x = x[:, self.eos_position]
        proj = self.clip.text_projection
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1)

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, D) L2-normalised CLIP image features (gradients flow to ``x``)."""
        return F.normalize(self.clip.encode_image(clip_image_input(x, self.image_size)), dim=-1)

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_classes) image-prompt cosine similarities."""
        return self.image_features(x) @ self.text_features().t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training logits: CLIP's ``logit_scale.exp()`` times the cosine similarities."""
        return self.clip.logit_scale.exp() * self.cosine(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_classes) class probabilities."""
        return self.forward(x).softmax(dim=-1)

    def save_prompts(self, folder) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"ctx": self.ctx.detach().cpu().contiguous()}
        if self.train_image_tower:
            tensors.update({f"visual.{k}": v.detach().cpu().contiguous() for k, v in self.clip.visual.state_dict().items()})
        save_file(tensors, str(folder / PROMPTS_WEIGHTS))
        meta = {"classes": list(self.classes), "n_ctx": self.n_ctx, "clip_backend": self.backend,
                "image_tower_trained": self.train_image_tower}  # fmt: skip
        (folder / PROMPTS_CONFIG).write_text(json.dumps(meta, indent=2))
        return folder

    def load_prompts(self, folder) -> "QualityPerceiver":
        from safetensors.torch import load_file

        folder = Path(folder)
        missing = [n for n in (PROMPTS_WEIGHTS, PROMPTS_CONFIG) if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {', '.join(missing)} (save them with save_prompts)")
        meta = json.loads((folder / PROMPTS_CONFIG).read_text())
        if tuple(meta["classes"]) != self.classes or meta["n_ctx"] != self.n_ctx:
            raise ValueError(f"prompts in {folder} are for {meta['classes']} x {meta['n_ctx']}, not {self.classes} x {self.n_ctx}")
        tensors = load_file(str(folder / PROMPTS_WEIGHTS))
        ctx = tensors["ctx"]
        if ctx.shape != self.ctx.shape:
            raise ValueError(f"prompt context {tuple(ctx.shape)} does not fit this CLIP ({tuple(self.ctx.shape)})")
        with torch.no_grad():
            self.ctx.copy_(ctx)
        visual = {k[len("visual."):]: v for k, v in tensors.items() if k.startswith("visual.")}
        if meta.get("image_tower_trained"):
            self.clip.visual.load_state_dict(visual)
        return self


def quality_loss(perceiver: QualityPerceiver, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Stage-1 cross-entropy: ``labels`` 0 = terrible (degraded), 1 = mediocre, 2 = excellent (clean)."""
    return F.cross_entropy(perceiver(images), labels)
