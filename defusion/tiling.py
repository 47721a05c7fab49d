"""Padding and overlap-tiled inference shared by every pipeline.

A convolutional network zero-pads at the border of whatever it is given, so the outermost rows of its output are
computed from made-up surroundings: a band along the image's edges, and along every tile's edges. Two things keep
both out of the result:

* ``pad_with_context(x, multiple, border)`` reflect-pads the image by ``border`` pixels on every side (and the
  bottom/right further to a multiple of the model's downsampling) before the model sees it; ``crop_context``
  takes the image back out of the output. The model's own border effects then fall on the padding.
* ``tiled_apply(fn, inputs, tile, overlap)`` runs ``fn`` on overlapping tiles of same-sized BCHW tensors and
  blends them with weights that are zero on the outer quarter of each overlap (a tile's own edge) and ramp
  linearly across the rest, so neighbouring tiles hand over where both see context on every side.

Model activations are bounded by the tile size, not the image size; only the inputs and the (blended) output are
held at full size. An input no larger than one tile is passed to ``fn`` whole, so tiled and untiled results are
identical there. ``context_tile(tile_size, border, multiple)`` is the tile the model sees for a pipeline's
``tile_size`` (the image region restored in one piece), so an image of ``tile_size`` stays one tile. Each pipeline
sets its ``context_border``: without it the shipped models' bands reach 8-20 rows into a flat image
(``benchmarks/restore_profile.py --borders`` measures them).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

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


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def padded_size(h: int, w: int, multiple: int = 1, border: int = 0) -> tuple[int, int]:
    """The size ``pad_with_context`` pads an (h, w) image to."""
    return round_up(h + 2 * border, multiple), round_up(w + 2 * border, multiple)


def pad_with_context(x: torch.Tensor, multiple: int = 1, border: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad a (..., H, W) tensor by ``border`` pixels on every side and the bottom/right further to a
    multiple of ``multiple`` (replicated where the image is too small to reflect). Returns the padded tensor and
    the (top, left) offset of the image in it, for ``crop_context``."""
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w, multiple, border)
    bottom, right = ph - h - border, pw - w - border
    if not (border or bottom or right):
        return x, (0, 0)
    mode = "reflect" if max(border, bottom) < h and max(border, right) < w else "replicate"
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w) if x.ndim != 4 else x  # torch pads 3-D/4-D inputs in these modes
    out = F.pad(flat, (border, right, border, bottom), mode=mode)
    return out.reshape(*lead, *out.shape[-2:]), (border, border)


def crop_context(y: torch.Tensor, offset: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """The (..., h, w) image back out of a padded output (``pad_with_context``'s offset)."""
    top, left = offset
    return y[..., top : top + size[0], left : left + size[1]]


def context_tile(tile_size: int | None, border: int, multiple: int = 1, extra: int = 0) -> int | None:
    """The tile the model sees for a pipeline's ``tile_size`` when images are padded by ``border`` on every side
    (and ``extra`` pixels more, such as a self-ensemble view's grid shift): an image of ``tile_size`` stays one
    tile."""
    return None if tile_size is None else round_up(tile_size + 2 * border + extra, multiple)


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length``, each overlapping the next by at least
    ``overlap`` pixels (``tile - multiple`` where that is less); starts are multiples of ``multiple`` except the
    last, which ends at ``length``."""
    if length <= tile:
        return [0]  # one tile along this side, however thin the image (no overlap needed)
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap})")
    if tile % multiple:
        raise ValueError(f"tile ({tile}) must be a multiple of {multiple}")
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def tile_layout(length: int, tile: int, overlap: int, multiple: int = 1) -> tuple[int, list[int]]:
    """(tile length, start offsets) along one side: as few tiles as ``tile`` allows, each only as long as that
    many tiles need (a 816-px side takes two 432-px tiles rather than two of 560), so overlaps cost little."""
    if length <= tile:
        return length, [0]
    starts = tile_starts(length, tile, overlap, multiple)
    n = len(starts)
    size = min(tile, max(overlap + multiple, round_up(-(-(length + (n - 1) * overlap) // n), multiple)))
    shorter = tile_starts(length, size, overlap, multiple)
    return (size, shorter) if len(shorter) <= n else (tile, starts)  # the grid may ask for one more: keep long ones


def tile_count(height: int, width: int, tile: int | None, overlap: int = 32, multiple: int = 1) -> int:
    """How many times ``tiled_apply`` calls its function on a (height, width) input."""
    if tile is None or (height <= tile and width <= tile):
        return 1
    return len(tile_layout(height, tile, overlap, multiple)[1]) * len(tile_layout(width, tile, overlap, multiple)[1])


def blend_window(h: int, w: int, top: int, left: int, H: int, W: int, overlap: int, device, dtype) -> torch.Tensor:
    """Weights for a (h, w) tile at (top, left) of an (H, W) input. Along an edge shared with another tile: 0 on
    the outer quarter of ``overlap`` (pixels the tile computed next to its own zero padding), then a linear ramp
    to 1 over the half after it; 1 elsewhere. Two tiles overlapping by exactly ``overlap`` sum to 1 across it."""

    def ramp(n, start, total):
        r = torch.ones(n, device=device, dtype=dtype)
        k = min(overlap, n)
        if k > 0:
            skip = k // 4
            d = torch.arange(k, device=device, dtype=dtype)
            up = ((d - skip + 0.5) / (k - 2 * skip)).clamp(0, 1)
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
    th, ys = tile_layout(H, tile, overlap, multiple)
    tw, xs = tile_layout(W, tile, overlap, multiple)
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
