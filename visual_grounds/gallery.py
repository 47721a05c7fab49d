"""Labelled image grids (numpy + Pillow), used by every gallery and comparison PNG of the package."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_LABEL_H = 14


def to_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_grid(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    cols: int | None = None,
    pad: int = 4,
    background: float = 1.0,
    tile_height: int | None = None,
) -> np.ndarray:
    """Tile float HWC images in [0, 1] into one grid, with an optional caption above each tile.

    Tiles of different sizes are placed top-left in cells sized to the largest tile; ``tile_height``
    first resizes every tile to that height (keeping its aspect ratio). Returns float32 HWC in [0, 1].
    """
    if len(images) == 0:
        raise ValueError("make_grid needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images")
    tiles = [to_uint8(im) for im in images]
    if tile_height:
        tiles = [
            np.asarray(Image.fromarray(t).resize((max(1, round(t.shape[1] * tile_height / t.shape[0])), tile_height), Image.LANCZOS))
            for t in tiles
        ]
    cols = cols or len(tiles)
    rows = (len(tiles) + cols - 1) // cols
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    lh = _LABEL_H if labels is not None else 0
    H = rows * (th + lh + pad) + pad
    W = cols * (tw + pad) + pad
    canvas = Image.new("RGB", (W, H), tuple([int(background * 255)] * 3))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        x, y = pad + c * (tw + pad), pad + r * (th + lh + pad)
        if labels is not None and labels[i]:
            draw.text((x + 1, y + 1), str(labels[i])[: max(4, tw // 6)], fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(tile), (x, y + lh))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def save_png(img: np.ndarray, path) -> Path:
    """Write a float HWC image in [0, 1] as an 8-bit PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(img)).save(path)
    return path
