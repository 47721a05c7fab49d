"""Test-time self-ensemble: restore an image under several rotations/flips and one-pixel grid shifts, undo each
view and average. The pipelines pick the views a degradation is invariant to
(``defusion.degradations.ensemble_symmetry``); each view may itself run tiled (``defusion.tiling``).
"""

from __future__ import annotations

import torch


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


def view_size(h: int, w: int, mode: int, dy: int, dx: int) -> tuple[int, int]:
    """The (height, width) of ``ensemble_view`` of an (h, w) image."""
    h, w = (w, h) if mode % 2 else (h, w)
    return h + dy, w + dx


def ensemble_unview(y: torch.Tensor, mode: int, dy: int, dx: int) -> torch.Tensor:
    """Undo ``ensemble_view`` on a pass's output."""
    return dihedral_inverse(y[..., dy:, dx:], mode)
