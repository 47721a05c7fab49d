"""Small helpers shared by the element generators (numpy + Pillow only).

Every element generator has the signature ``fn(rng, size) -> image`` where ``rng`` is a
``numpy.random.Generator``, ``size`` is ``(height, width)`` and ``image`` is float32 HWC RGB in [0, 1].
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SUPERSAMPLE = 3  # analytic patterns are rendered at 3x and box-filtered down to avoid aliasing


def check_size(size) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}") from None
    if h < 8 or w < 8:
        raise ValueError(f"element size must be at least 8 x 8 pixels, got {h} x {w}")
    return h, w


def centred_grid(h: int, w: int, ss: int = 1, center=(0.5, 0.5)) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) in units of the shorter side, origin at ``center`` (fractions)."""
    scale = min(h, w)
    ys = (np.arange(h * ss, dtype=np.float32) + 0.5) / ss - center[0] * h
    xs = (np.arange(w * ss, dtype=np.float32) + 0.5) / ss - center[1] * w
    return np.meshgrid(xs / scale, ys / scale)


def downsample(img: np.ndarray, ss: int) -> np.ndarray:
    """Box-filter an (H*ss, W*ss[, C]) array down by ``ss``."""
    if ss == 1:
        return img
    h, w = img.shape[0] // ss, img.shape[1] // ss
    return img.reshape(h, ss, w, ss, *img.shape[2:]).mean(axis=(1, 3))


def to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def two_tone(pattern: np.ndarray, rng: np.random.Generator, contrast_range=(0.7, 1.0)) -> np.ndarray:
    """Map a pattern in [0, 1] onto a random dark/light pair (mostly neutral, like a printed chart)."""
    contrast = rng.uniform(*contrast_range)
    mid = rng.uniform(0.45, 0.55)
    lo, hi = mid - contrast / 2, mid + contrast / 2
    out = to_rgb(lo + (hi - lo) * pattern)
    if rng.random() < 0.3:  # occasionally tinted, as on colour resolution targets
        tint = rng.uniform(0.75, 1.0, size=3).astype(np.float32)
        out = out * tint
    return finish(out)


def finish(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def spectral_noise(rng: np.random.Generator, h: int, w: int, beta: float, channels: int = 1) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**beta, each channel normalised to zero mean, unit std."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2.0)
    amp[0, 0] = 0.0
    out = np.empty((h, w, channels), np.float32)
    for c in range(channels):
        spec = np.fft.rfft2(rng.standard_normal((h, w))) * amp
        field = np.fft.irfft2(spec, s=(h, w))
        field -= field.mean()
        out[..., c] = field / (field.std() + 1e-8)
    return out


def normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo + 1e-8)).astype(np.float32)


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float HWC image to (h, w) with Pillow's bicubic filter, per channel in float mode."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img.astype(np.float32)
    chans = [
        np.asarray(Image.fromarray(img[..., c].astype(np.float32), mode="F").resize((w, h), Image.BICUBIC))
        for c in range(img.shape[2])
    ]
    return finish(np.stack(chans, axis=-1))


def palette(rng: np.random.Generator, stops: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour map: ``stops`` is (K, 3) colours at evenly spaced positions in [0, 1]."""
    k = len(stops)
    pos = np.clip(t, 0, 1) * (k - 1)
    i = np.minimum(pos.astype(int), k - 2)
    frac = (pos - i)[..., None]
    return finish(stops[i] * (1 - frac) + stops[i + 1] * frac)
