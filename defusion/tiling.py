"""Overlap-tiled inference shared by every pipeline.

``tiled_apply(fn, inputs, tile, overlap)`` runs ``fn`` on overlapping tiles of same-sized BCHW tensors and
blends the tile outputs with weights that ramp linearly to (almost) zero across the overlap, so seams vanish.
Model activations are bounded by the tile size, not the image size; only the inputs and the (blended) output
are held at full size. An image no larger than one tile is passed to ``fn`` whole, so tiled and untiled
results are identical there.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def check_tiling(tile_size, tile_overlap, multiple: int = 1) -> None:
    """Validate a pipeline's ``tile_size`` (None: no tiling, or a positive multiple of ``multiple``) and
    ``tile_overlap`` (a whole number of pixels, at least 0, below ``tile_size``)."""
    if tile_size is not None and (isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < multiple
                                  or tile_size % multiple):  # fmt: skip
        raise ValueError(f"tile_size must be None or a positive multiple of {multiple}, got {tile_size!r}")
    if isinstance(tile_overlap, bool) or not isinstance(tile_overlap, int) or tile_overlap < 0:
        raise ValueError(f"tile_overlap must be a whole number of pixels >= 0, got {tile_overlap!r}")
    if tile_size is not None and tile_overlap >= tile_size:
        raise ValueError(f"tile_overlap ({tile_overlap}) must be smaller than tile_size ({tile_size})")


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` between them."""
    if length <= tile:
        return [0]  # one tile along this side, however thin the image (no overlap needed)
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap})")
    if tile % multiple:
        raise ValueError(f"tile ({tile}) must be a multiple of {multiple}")
    stride = tile - overlap
    n = -(-(length - tile) // stride) + 1  # ceil
    starts = [min(i * stride, length - tile) for i in range(n)]
    starts = [s - s % multiple if s != length - tile else s for s in starts]
    return sorted(set(starts))


def tile_count(height: int, width: int, tile: int | None, overlap: int = 32, multiple: int = 1) -> int:
    """How many times ``tiled_apply`` calls its function on a (height, width) input."""
    if tile is None or (height <= tile and width <= tile):
        return 1
    return len(tile_starts(height, min(tile, height), overlap, multiple)) * len(tile_starts(width, min(tile, width), overlap, multiple))


def blend_window(h: int, w: int, top: int, left: int, H: int, W: int, overlap: int, device, dtype) -> torch.Tensor:
    """Weights for a tile: 1 inside, a linear ramp over ``overlap`` pixels towards interior borders."""

    def ramp(n, start, total):
        r = torch.ones(n, device=device, dtype=dtype)
        if overlap > 0:
            k = min(overlap, n)
            up = (torch.arange(k, device=device, dtype=dtype) + 1) / (k + 1)
            if start > 0:
                r[:k] = torch.minimum(r[:k], up)
            if start + n < total:
                r[n - k :] = torch.minimum(r[n - k :], up.flip(0))
        return r

    return ramp(h, top, H)[:, None] * ramp(w, left, W)[None, :]


def tiled_apply(
    fn: Callable[[Sequence[torch.Tensor]], torch.Tensor],
    inputs: Sequence[torch.Tensor],
    tile: int | None,
    overlap: int = 32,
    multiple: int = 1,
) -> torch.Tensor:
    """Apply ``fn(list_of_tiles) -> tile_output`` over overlapping tiles of ``inputs`` (same B, H, W)."""
    H, W = inputs[0].shape[-2:]
    if any(x.shape[-2:] != (H, W) for x in inputs):
        raise ValueError("all tiled inputs must have the same height and width")
    if tile is None or (H <= tile and W <= tile):
        return fn(list(inputs))
    ys = tile_starts(H, min(tile, H), overlap, multiple)
    xs = tile_starts(W, min(tile, W), overlap, multiple)
    th, tw = min(tile, H), min(tile, W)
    out = weight = None
    for top in ys:
        for left in xs:
            res = fn([x[..., top : top + th, left : left + tw] for x in inputs])
            if out is None:
                out = torch.zeros(*res.shape[:-2], H, W, device=res.device, dtype=torch.float32)
                weight = torch.zeros(H, W, device=res.device, dtype=torch.float32)
            wnd = blend_window(th, tw, top, left, H, W, overlap, res.device, torch.float32)
            out[..., top : top + th, left : left + tw] += res.float() * wnd
            weight[top : top + th, left : left + tw] += wnd
    return (out / weight).to(inputs[0].dtype)
