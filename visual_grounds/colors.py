"""Calibrated colours: a colour-checker chart, grey ramps and hue wheels.

Flat patches show colour casts (haze, underwater, low light), noise and banding clearly, and little
else: the paper notes that different elements respond differently to each degradation.
"""

from __future__ import annotations

import numpy as np

from ._canvas import centred_grid, check_size, finish

# The 24 patches of the classic colour checker (4 rows x 6), as the widely published 8-bit sRGB
# values under D65. Row 1: dark skin .. bluish green; row 2: orange .. orange yellow;
# row 3: blue .. cyan; row 4: the neutral series white 9.5 .. black 2.
COLOR_CHECKER_SRGB = np.array(
    [
        [115, 82, 68], [194, 150, 130], [98, 122, 157], [87, 108, 67], [133, 128, 177], [103, 189, 170],
        [214, 126, 44], [80, 91, 166], [193, 90, 99], [94, 60, 108], [157, 188, 64], [224, 163, 46],
        [56, 61, 150], [70, 148, 73], [175, 54, 60], [231, 199, 31], [187, 86, 149], [8, 133, 161],
        [243, 243, 242], [200, 200, 200], [160, 160, 160], [122, 122, 121], [85, 85, 85], [52, 52, 52],
    ],
    dtype=np.uint8,
)
COLOR_CHECKER_NAMES = (
    "dark skin", "light skin", "blue sky", "foliage", "blue flower", "bluish green",
    "orange", "purplish blue", "moderate red", "purple", "yellow green", "orange yellow",
    "blue", "green", "red", "yellow", "magenta", "cyan",
    "white 9.5", "neutral 8", "neutral 6.5", "neutral 5", "neutral 3.5", "black 2",
)  # fmt: skip


def color_checker(rng: np.random.Generator, size) -> np.ndarray:
    """4 x 6 patches of the standard chart on a black surround (optionally rotated by 90 degrees)."""
    h, w = check_size(size)
    rows, cols = (4, 6) if (w >= h) != (rng.random() < 0.25) else (6, 4)
    patches = COLOR_CHECKER_SRGB.astype(np.float32) / 255.0
    grid = patches.reshape(4, 6, 3) if rows == 4 else patches.reshape(4, 6, 3).transpose(1, 0, 2)
    border = rng.uniform(0.06, 0.12)  # gap between patches as a fraction of the patch pitch
    yy = (np.arange(h) + 0.5) / h * rows
    xx = (np.arange(w) + 0.5) / w * cols
    ri, ci = yy.astype(int), xx.astype(int)
    in_row = ((yy % 1.0) > border / 2) & ((yy % 1.0) < 1 - border / 2)
    in_col = ((xx % 1.0) > border / 2) & ((xx % 1.0) < 1 - border / 2)
    inside = in_row[:, None] & in_col[None, :]
    img = grid[ri[:, None], ci[None, :]]
    surround = np.float32(rng.uniform(0.0, 0.12))
    return finish(np.where(inside[..., None], img, surround))


def grey_ramp(rng: np.random.Generator, size) -> np.ndarray:
    """A continuous grey ramp above a stepped one (OECF-style), horizontal or vertical."""
    h, w = check_size(size)
    vertical = rng.random() < 0.5
    length = h if vertical else w
    t = (np.arange(length, dtype=np.float32) + 0.5) / length
    steps = int(rng.choice([8, 11, 16, 20]))
    stepped = np.floor(t * steps) / (steps - 1)
    if rng.random() < 0.5:
        t, stepped = t[::-1], stepped[::-1]
    other = w if vertical else h
    split = int(other * rng.uniform(0.35, 0.65))
    band = np.concatenate([np.tile(t, (split, 1)), np.tile(stepped, (other - split, 1))], axis=0)
    img = band.T if vertical else band
    return finish(np.repeat(img[..., None], 3, axis=-1))


def hue_wheel(rng: np.random.Generator, size) -> np.ndarray:
    """Hue by angle and saturation by radius (an HSV colour wheel) on a mid-grey field."""
    h, w = check_size(size)
    x, y = centred_grid(h, w)
    r = np.hypot(x, y) / 0.48
    hue = (np.arctan2(y, x) / (2 * np.pi) + rng.uniform(0, 1)) % 1.0
    sat = np.clip(r, 0, 1)
    val = np.float32(rng.uniform(0.8, 1.0))
    # HSV -> RGB, vectorised
    i = np.floor(hue * 6).astype(int) % 6
    f = hue * 6 - np.floor(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    v = np.full_like(p, val)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros((h, w, 3), np.float32)
    for k, (a, b, c) in enumerate(table):
        m = i == k
        rgb[m] = np.stack([a[m], b[m], c[m]], axis=-1)
    return finish(np.where((r <= 1.0)[..., None], rgb, np.float32(0.5)))


def hue_bars(rng: np.random.Generator, size) -> np.ndarray:
    """Fully saturated hue sweep with a lightness gradient across it (a colour bar strip)."""
    h, w = check_size(size)
    hue = np.linspace(0, 1, w, endpoint=False, dtype=np.float32)[None, :].repeat(h, 0)
    light = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(w, 1)
    base = np.clip(np.abs(((hue[..., None] * 6 + np.array([0, 4, 2])) % 6) - 3) - 1, 0, 1)
    img = np.where(light[..., None] > 0.5, base + (1 - base) * (2 * light[..., None] - 1), base * 2 * light[..., None])
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return finish(img)


ELEMENTS = {
    "color_checker": color_checker,
    "grey_ramp": grey_ramp,
    "hue_wheel": hue_wheel,
    "hue_bars": hue_bars,
}
