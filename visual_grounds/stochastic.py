"""Random (stochastic) textures: dead leaves, 1/f noise and random line fields.

Dead leaves is the standard chart for texture loss (IEEE P1858 / ISO 19567-2): its scale-invariant
statistics resemble natural images, so denoisers that smear texture show it at once.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ._canvas import check_size, finish, normalise, spectral_noise

_SS = 2  # supersampling for drawn shapes


def _random_colour(rng: np.random.Generator, grey: bool) -> tuple[int, int, int]:
    if grey:
        v = int(rng.integers(0, 256))
        return (v, v, v)
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def dead_leaves(rng: np.random.Generator, size) -> np.ndarray:
    """Occluding discs with radius density ~ r^-3 between rmin and rmax (scale-invariant)."""
    h, w = check_size(size)
    grey = rng.random() < 0.4
    rmin, rmax = 2.0, 0.25 * min(h, w)
    canvas = Image.new("RGB", (w * _SS, h * _SS), _random_colour(rng, grey))
    draw = ImageDraw.Draw(canvas)
    # ~5 layers of discs on average, so the first colour is practically never visible
    n = int(0.06 * (h + 2 * rmax) * (w + 2 * rmax))
    # inverse-CDF sampling of p(r) ~ r^-3 on [rmin, rmax]
    u = rng.random(n)
    radii = (rmin**-2 - u * (rmin**-2 - rmax**-2)) ** -0.5
    cx = rng.uniform(-rmax, w + rmax, n)
    cy = rng.uniform(-rmax, h + rmax, n)
    for r, x, y in zip(radii, cx, cy):
        box = [(x - r) * _SS, (y - r) * _SS, (x + r) * _SS, (y + r) * _SS]
        draw.ellipse(box, fill=_random_colour(rng, grey))
    canvas = canvas.resize((w, h), Image.BOX)
    return finish(np.asarray(canvas, dtype=np.float32) / 255.0)


def pink_noise(rng: np.random.Generator, size) -> np.ndarray:
    """Gaussian noise with a 1/f^beta power spectrum (beta near 1-2), grey or coloured."""
    h, w = check_size(size)
    beta = rng.uniform(1.0, 2.0)
    colour = rng.random() < 0.5
    field = spectral_noise(rng, h, w, beta, channels=3 if colour else 1)
    img = 0.5 + 0.18 * field
    if not colour:
        img = np.repeat(img, 3, axis=-1)
    return finish(img)


def random_lines(rng: np.random.Generator, size) -> np.ndarray:
    """Random straight lines of random orientation, width and grey level over a flat field."""
    h, w = check_size(size)
    bg = float(rng.uniform(0.2, 0.8))
    canvas = Image.new("RGB", (w * _SS, h * _SS), tuple([int(bg * 255)] * 3))
    draw = ImageDraw.Draw(canvas)
    n = int(rng.integers(20, 60))
    diag = np.hypot(h, w)
    colour = rng.random() < 0.4
    for _ in range(n):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        a = rng.uniform(0, np.pi)
        half = rng.uniform(0.2, 1.0) * diag
        x0, y0 = cx - half * np.cos(a), cy - half * np.sin(a)
        x1, y1 = cx + half * np.cos(a), cy + half * np.sin(a)
        width = max(1, int(rng.choice([1, 1, 2, 3, 5]) * _SS))
        draw.line([(x0 * _SS, y0 * _SS), (x1 * _SS, y1 * _SS)], fill=_random_colour(rng, not colour), width=width)
    canvas = canvas.resize((w, h), Image.BOX)
    return finish(np.asarray(canvas, dtype=np.float32) / 255.0)


def binary_noise(rng: np.random.Generator, size) -> np.ndarray:
    """Thresholded band-limited noise: random blobs with hard edges at many scales."""
    h, w = check_size(size)
    field = spectral_noise(rng, h, w, rng.uniform(2.0, 3.0))[..., 0]
    img = (normalise(field) > 0.5).astype(np.float32)
    lo, hi = rng.uniform(0.05, 0.3), rng.uniform(0.7, 0.95)
    return finish(np.repeat((lo + (hi - lo) * img)[..., None], 3, axis=-1))


ELEMENTS = {
    "dead_leaves": dead_leaves,
    "pink_noise": pink_noise,
    "random_lines": random_lines,
    "binary_noise": binary_noise,
}
