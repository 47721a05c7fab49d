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


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` between them."""
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap})")
    if tile % multiple:
        raise ValueError(f"tile ({tile}) must be a multiple of {multiple}")
    if length <= tile:
        return [0]
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


def dihedral(x: torch.Tensor, mode: int) -> torch.Tensor:
    """One of the 8 rotations/flips of a (..., H, W) tensor, as ``defusion.data.dihedral`` does for training crops
    (mode 0 is the identity; modes 4-7 flip left-right before rotating)."""
    if mode >= 4:
        x = x.flip(-1)
    return torch.rot90(x, mode % 4, dims=(-2, -1))


def dihedral_inverse(x: torch.Tensor, mode: int) -> torch.Tensor:
    """Undo ``dihedral(x, mode)``."""
    x = torch.rot90(x, -(mode % 4), dims=(-2, -1))
    return x.flip(-1) if mode >= 4 else x


# Test-time self-ensemble. Pass i restores the image under dihedral mode i % 8, moved down/right by a one-pixel
# shift that cycles through the four phases of a 2x2 grid (the U-Net's pixel-unshuffle stem), so any prefix of
# 2, 4, 8, 16 or 32 passes mixes orientations and grid phases and all 32 passes cover every pair once. On held-out
# BSD400 images at sigma 25, a one-pixel shift decorrelates the errors as much as a flip does, while an 8-pixel
# shift barely does (benchmarks/ensemble_passes.py, benchmarks/noise_variance.py --shifts 1,8).
ENSEMBLE_SIZES = (1, 2, 4, 8, 16, 32)
_PHASES = ((0, 0), (1, 1), (0, 1), (1, 0))


def ensemble_passes(self_ensemble: bool | int) -> int:
    """Number of passes for a ``self_ensemble`` argument: False -> 1, True -> 8, or one of ``ENSEMBLE_SIZES``."""
    if isinstance(self_ensemble, bool):
        return 8 if self_ensemble else 1
    if not isinstance(self_ensemble, int) or self_ensemble not in ENSEMBLE_SIZES:
        raise ValueError(f"self_ensemble must be True, False or one of {ENSEMBLE_SIZES} passes, got {self_ensemble!r}")
    return self_ensemble


def ensemble_plan(passes: int, modes=tuple(range(8)), shifts: bool = True) -> list[tuple[int, int, int]]:
    """(dihedral mode, shift down, shift right) of each pass of a ``passes``-pass self-ensemble.

    ``modes`` and ``shifts`` restrict the views to those the degradation is invariant to
    (``defusion.degradations.ensemble_symmetry``): the plan is then the first ``passes`` allowed views of the
    32-pass plan, and fewer than ``passes`` where fewer views are allowed (one, the identity, for JPEG)."""
    if passes not in ENSEMBLE_SIZES:
        raise ValueError(f"passes must be one of {ENSEMBLE_SIZES}, got {passes}")
    modes = set(modes)
    if not modes or not modes <= set(range(8)):
        raise ValueError(f"modes must be a non-empty subset of 0..7, got {sorted(modes)}")
    full = [(i % 8, *_PHASES[(i + i // 8) % 4]) for i in range(32)]
    allowed = [v for v in full if v[0] in modes and (shifts or v[1:] == (0, 0))] or [(0, 0, 0)]
    return allowed[:passes]


def ensemble_view(x: torch.Tensor, mode: int, dy: int, dx: int) -> torch.Tensor:
    """The (..., H, W) input of one pass: ``dihedral(x, mode)`` padded by ``dy`` rows on top and ``dx`` columns on
    the left (reflected; replicated where the image is a single pixel wide)."""
    x = dihedral(x, mode)
    if dy or dx:
        small = x.shape[-2] <= dy or x.shape[-1] <= dx
        x = torch.nn.functional.pad(x, (dx, 0, dy, 0), mode="replicate" if small else "reflect")
    return x


def ensemble_unview(y: torch.Tensor, mode: int, dy: int, dx: int) -> torch.Tensor:
    """Undo ``ensemble_view`` on a pass's output."""
    return dihedral_inverse(y[..., dy:, dx:], mode)
