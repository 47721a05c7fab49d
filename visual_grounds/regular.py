"""Concentric and regular textures: the resolution targets of a TE42-like chart.

These elements respond strongly to blur (loss of high frequencies), aliasing from resizing and
JPEG ringing, because they hold sharp edges at known orientations and frequencies.
"""

from __future__ import annotations

import numpy as np

from ._canvas import SUPERSAMPLE, centred_grid, check_size, downsample, two_tone


def siemens_star(rng: np.random.Generator, size) -> np.ndarray:
    """Siemens star: ``n`` black/white sectors; spatial frequency rises towards the centre."""
    h, w = check_size(size)
    n = int(rng.choice([12, 16, 24, 36, 48]))
    x, y = centred_grid(h, w, SUPERSAMPLE, center=(0.5 + rng.uniform(-0.05, 0.05), 0.5 + rng.uniform(-0.05, 0.05)))
    theta = np.arctan2(y, x) + rng.uniform(0, np.pi)
    pattern = (np.sin(n * theta) > 0).astype(np.float32)
    r = np.hypot(x, y)
    pattern = np.where(r < rng.uniform(0.4, 0.5), pattern, 0.5)  # grey surround, as printed
    return two_tone(downsample(pattern, SUPERSAMPLE), rng)


def zone_plate(rng: np.random.Generator, size) -> np.ndarray:
    """Circular zone plate: cos(k r^2), a chirp that sweeps all frequencies up to Nyquist."""
    h, w = check_size(size)
    x, y = centred_grid(h, w, SUPERSAMPLE)
    # instantaneous frequency k * r / pi cycles per unit; reach ~0.45 cycles/pixel at the border
    kmax = 0.45 * np.pi * min(h, w) / 0.5
    k = kmax * rng.uniform(0.5, 1.0)
    pattern = 0.5 + 0.5 * np.cos(k * (x**2 + y**2))
    return two_tone(downsample(pattern, SUPERSAMPLE), rng)


def concentric_rings(rng: np.random.Generator, size) -> np.ndarray:
    """Square-wave rings of constant period (a ring target)."""
    h, w = check_size(size)
    x, y = centred_grid(h, w, SUPERSAMPLE, center=(rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)))
    period_px = rng.uniform(3.0, 10.0)
    r = np.hypot(x, y) * min(h, w)
    pattern = (np.sin(2 * np.pi * r / period_px) > 0).astype(np.float32)
    return two_tone(downsample(pattern, SUPERSAMPLE), rng)


def hyperbolic_wedge(rng: np.random.Generator, size) -> np.ndarray:
    """Converging line pairs (hyperbolic wedge): line count fixed, spacing shrinks along the wedge."""
    h, w = check_size(size)
    x, y = centred_grid(h, w, SUPERSAMPLE, center=(0.5, 0.0))
    n_lines = int(rng.integers(4, 9))
    along = y / (h / min(h, w))  # 0 at top, 1 at bottom
    width = 0.95 - 0.85 * along  # wedge narrows downwards
    u = x / np.maximum(width, 1e-3)
    inside = np.abs(u) < 0.5
    pattern = np.where(inside, (np.sin(2 * np.pi * n_lines * (u + 0.5)) > 0), 0.5).astype(np.float32)
    out = downsample(pattern, SUPERSAMPLE)
    if rng.random() < 0.5:
        out = out.T if h == w else out[::-1]
    return two_tone(np.ascontiguousarray(out), rng)


def line_pairs(rng: np.random.Generator, size) -> np.ndarray:
    """Groups of line pairs at stepped frequencies and a random orientation (bar target)."""
    h, w = check_size(size)
    x, y = centred_grid(h, w, SUPERSAMPLE)
    angle = rng.choice([0.0, np.pi / 2, np.pi / 4, rng.uniform(0, np.pi)])
    u = (x * np.cos(angle) + y * np.sin(angle)) * min(h, w)
    v = (-x * np.sin(angle) + y * np.cos(angle)) * min(h, w)
    groups = int(rng.integers(3, 6))
    span = max(h, w) * 1.5
    group = np.clip(((v + span / 2) / span * groups).astype(int), 0, groups - 1)
    periods = np.geomspace(12.0, 2.5, groups)[group]
    pattern = (np.sin(2 * np.pi * u / periods) > 0).astype(np.float32)
    return two_tone(downsample(pattern, SUPERSAMPLE), rng)


def slanted_edge(rng: np.random.Generator, size) -> np.ndarray:
    """ISO 12233 slanted edge: a dark square rotated by a few degrees on a light field (the MTF target)."""
    h, w = check_size(size)
    x, y = centred_grid(h, w, SUPERSAMPLE)
    angle = np.deg2rad(rng.uniform(3.0, 8.0)) * rng.choice([-1, 1])
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    half = rng.uniform(0.2, 0.3)
    square = (np.abs(u) < half) & (np.abs(v) < half)
    pattern = np.where(square, 0.0, 1.0).astype(np.float32)
    img = downsample(pattern, SUPERSAMPLE)
    # low contrast (4:1 in reflectance) like the ISO edge, not pure black/white
    lo, hi = rng.uniform(0.15, 0.25), rng.uniform(0.7, 0.8)
    return np.repeat((lo + (hi - lo) * img)[..., None], 3, axis=-1).astype(np.float32)


ELEMENTS = {
    "siemens_star": siemens_star,
    "zone_plate": zone_plate,
    "concentric_rings": concentric_rings,
    "hyperbolic_wedge": hyperbolic_wedge,
    "line_pairs": line_pairs,
    "slanted_edge": slanted_edge,
}
