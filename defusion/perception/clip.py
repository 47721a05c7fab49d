"""Loading a frozen open_clip model from a local path, or an explicitly labelled random stand-in.

``load_clip(path)`` accepts
* a folder in open_clip's hub layout (``open_clip_config.json`` + ``open_clip_model.safetensors`` or
  ``open_clip_pytorch_model.bin``), loaded with the ``local-dir:`` schema, so any architecture works;
* a folder or file holding only weights, loaded as ``ViT-B-32`` (the papers' model);
* None: the offline fallback, a small CLIP-shaped model (``FALLBACK_CLIP_CONFIG``) with seeded random
  weights. Its backend string says "random", and a warning is logged, so results are never mistaken for
  pretrained CLIP.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# A CLIP-shaped stand-in: the RN-CLIP image tower (open_clip's ModifiedResNet with attention pooling) at a fraction
# of RN50's width and depth, and ViT-B/32's text layout (context 77, the CLIP BPE vocabulary) shrunk likewise. A
# random ResNet keeps far more of an image's texture statistics than a random ViT (a linear probe of three noise
# tiers: about 0.75 vs 0.45 held out), so the quality prompts still have something to learn from. CLIP's learned
# logit scale (100) replaces the untrained 1/0.07.
FALLBACK_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    "init_logit_scale": 4.605170185988092,
}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def random_clip(config: dict | None = None, seed: int = 0):
    """An open_clip ``CLIP`` built from ``config`` (default ``FALLBACK_CLIP_CONFIG``) with seeded random weights."""
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.CLIP(**(config or FALLBACK_CLIP_CONFIG))


def save_open_clip_folder(model, folder, config: dict) -> Path:
    """Write ``model`` in open_clip's hub layout (used by tests to exercise the real loading path offline)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def load_clip(path=None, device="cpu", seed: int = 0):
    """(frozen eval-mode open_clip model, backend description). See the module docstring for ``path``."""
    import open_clip

    if path is None:
        logger.warning("no CLIP weights given: using a small random-weight CLIP stand-in (not pretrained)")
        model, backend = random_clip(seed=seed), "random small CLIP (fallback, not pretrained)"
    else:
        p = Path(path)
        if p.is_dir() and (p / "open_clip_config.json").is_file():
            model, backend = open_clip.create_model(f"local-dir:{p}"), f"open_clip local-dir ({p.name})"
        else:
            if p.is_dir():
                found = sorted(q for q in p.iterdir() if q.suffix in (".safetensors", ".bin", ".pt", ".pth"))
                if not found:
                    raise FileNotFoundError(f"no open_clip checkpoint (.safetensors/.bin/.pt) in {p}")
                p = found[0]
            if not p.is_file():
                raise FileNotFoundError(f"CLIP checkpoint {p} not found")
            model, backend = open_clip.create_model("ViT-B-32", pretrained=str(p)), f"open_clip ViT-B-32 ({p.name})"
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model, backend
