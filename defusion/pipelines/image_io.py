"""Image handling shared by the pipelines: inputs to float arrays, padding, outputs to PIL / np / pt."""

from __future__ import annotations

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor

from ..images import to_float_image

OUTPUT_TYPES = ("pil", "np", "pt")
_IN_RANGE = VaeImageProcessor(vae_scale_factor=1, do_resize=False, do_normalize=False)  # outputs already in [0, 1]


def as_image_list(image) -> list[np.ndarray]:
    """PIL / numpy / torch, single or list (or a BCHW / BHWC batch) -> list of float32 HWC RGB arrays in [0, 1]."""
    if isinstance(image, (list, tuple)):
        if not image:
            raise ValueError("no images given")
        return [to_float_image(im, rgb=True) for im in image]
    if isinstance(image, (torch.Tensor, np.ndarray)) and image.ndim == 4:
        return [to_float_image(im, rgb=True) for im in image]
    return [to_float_image(image, rgb=True)]


def group_by_shape(images: list[np.ndarray]) -> dict[tuple, list[int]]:
    """Indices of same-sized images (they run as one batch)."""
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(im.shape, []).append(i)
    return groups


def to_model_batch(images: list[np.ndarray], device, dtype) -> torch.Tensor:
    """Same-sized HWC [0, 1] arrays -> (B, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(device, dtype)  # a copy: safe to scale in place
    return x.mul_(2).sub_(1)


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")


def postprocess(x, output_type: str):
    """(B, 3, H, W) in [-1, 1] (or a list of (3, H, W) of different sizes) -> PIL list, np BHWC or pt BCHW in [0, 1]
    (diffusers' ``VaeImageProcessor.postprocess``; tensors come back on the CPU)."""
    if isinstance(x, list):
        return [postprocess(t[None], output_type)[0] for t in x]
    x = x.float().cpu()
    x = x.mul(0.5) if x.requires_grad else x.mul_(0.5)  # [-1, 1] -> [0, 1] in place: no full-size copies of a
    x = x.add_(0.5).clamp_(0, 1)  # large image (the pipelines pass their own result tensors)
    return _IN_RANGE.postprocess(x, output_type=output_type)
