"""Image I/O, conversion, validation and labelled grids, shared by degradations, grounds, instructions, pipelines,
the CLI, training and evaluation (numpy + Pillow only).

Convention: degradations and grounds work on numpy float32 HWC in [0, 1] with 1 or 3 channels.
``to_float_image`` turns what users have (PIL images of any mode, uint8/uint16/float arrays, torch tensors,
16-bit PNGs, RGBA) into that; ``check_image`` rejects what cannot be handled with a message that names the
problem, before anything reaches numpy or torch internals.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

MAX_PIXELS = 80_000_000  # refuse images above 80 megapixels instead of running out of memory deep inside


def check_image(img, name: str = "image", channels=(1, 3)) -> np.ndarray:
    """Validate a float HWC image in [0, 1]; return it as float32 (a view when possible)."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (float32 HWC in [0, 1]), got {type(img).__name__}")
    if img.ndim != 3:
        raise ValueError(f"{name} must have shape (H, W, C), got shape {img.shape}")
    h, w, c = img.shape
    if h == 0 or w == 0:
        raise ValueError(f"{name} is empty (shape {img.shape})")
    if c not in channels:
        raise ValueError(f"{name} must have {' or '.join(map(str, channels))} channels, got {c} (shape {img.shape})")
    if h * w > MAX_PIXELS:
        raise ValueError(f"{name} has {h}x{w} pixels, above the limit of {MAX_PIXELS}; tile or resize it first")
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(
            f"{name} must be a float array in [0, 1], got dtype {img.dtype}; convert with defusion.images.to_float_image"
        )
    img = img.astype(np.float32, copy=False)
    if not np.isfinite(img).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(img.min()), float(img.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{name} values must be in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    if lo < 0 or hi > 1:
        img = np.clip(img, 0.0, 1.0)
    return img


def _png_bit_depth(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack("B", head[24:25])[0]


def _pil_to_float(im: Image.Image) -> np.ndarray:
    im = ImageOps.exif_transpose(im)  # phone photos: the pixels the way the camera was held
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im, dtype=np.uint16).astype(np.float32) / 65535.0
        return arr[..., None]
    if im.mode == "I":  # 32-bit int, as Pillow opens some 16-bit greyscale PNGs
        arr = np.asarray(im, dtype=np.float64)
        scale = 65535.0 if arr.max() > 255 else 255.0
        return (np.clip(arr, 0, scale) / scale).astype(np.float32)[..., None]
    if im.mode == "F":
        return to_float_image(np.asarray(im, dtype=np.float32))
    if im.mode in ("1", "L"):
        return (np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[..., None]
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # composite on white: transparent regions of scans/screenshots are usually paper-white
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.float32) / 255.0
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def to_float_image(x, rgb: bool = False) -> np.ndarray:
    """Convert a PIL image, numpy array or torch tensor to float32 HWC in [0, 1].

    * uint8 arrays are divided by 255, uint16 by 65535; float arrays must already be in [0, 1].
    * 2-D arrays become one channel; 4 channels (RGBA) are composited on white.
    * torch tensors may be CHW or HWC in [0, 1] (a leading batch dimension of 1 is dropped).
    * ``rgb=True`` repeats a grey channel to three.
    """
    if isinstance(x, Image.Image):
        if x.width * x.height > MAX_PIXELS:
            raise ValueError(f"image is {x.width} x {x.height}, above the {MAX_PIXELS // 1_000_000} MP limit")
        try:
            arr = _pil_to_float(x)
        except OSError as e:  # a lazily opened file that turns out truncated or corrupt
            raise ValueError(f"cannot decode the image: {e}") from None
    elif isinstance(x, np.ndarray):
        arr = x
        if arr.size == 0:
            raise ValueError(f"image is empty (shape {arr.shape})")
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        elif arr.dtype == np.uint16:
            arr = arr.astype(np.float32) / 65535.0
        elif arr.dtype == bool:
            arr = arr.astype(np.float32)
        elif not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"unsupported image dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")
        if arr.ndim == 3 and arr.shape[-1] == 4:
            alpha = arr[..., 3:4].astype(np.float32)
            arr = arr[..., :3] * alpha + (1.0 - alpha)
    elif type(x).__module__.startswith("torch"):
        t = x.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 3 and t.shape[0] in (1, 3, 4):  # torch images are CHW, as in diffusers (even when W is 3)
            t = t.permute(1, 2, 0)
        return to_float_image(t.float().numpy(), rgb=rgb)
    else:
        raise TypeError(f"expected a PIL image, numpy array or torch tensor, got {type(x).__name__}")
    arr = check_image(np.asarray(arr, dtype=np.float32))
    if rgb and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


def load_image(path, rgb: bool = True) -> np.ndarray:
    """Read an image file as float32 HWC in [0, 1]; 16-bit PNGs keep their precision."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    if _png_bit_depth(path) == 16:
        import cv2

        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise ValueError(f"cannot decode 16-bit PNG {path}")
        if raw.ndim == 3:
            raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA if raw.shape[-1] == 4 else cv2.COLOR_BGR2RGB)
        return to_float_image(raw, rgb=rgb)
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:  # read from the header: refuse before decoding gigabytes
                raise ValueError(f"{path.name} is {im.width} x {im.height}, above the {MAX_PIXELS // 1_000_000} MP limit")
            im.load()
            return to_float_image(im, rgb=rgb)
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e


def save_image(img, path) -> Path:
    """Write a float HWC image in [0, 1] (or anything ``to_float_image`` takes) as an 8-bit PNG/JPEG."""
    return save_png(to_float_image(img), path)


# ---- labelled grids (diffusers' make_image_grid takes equal-sized tiles without captions and imports torch)
_LABEL_H = 14


def to_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    out = np.clip(img, 0.0, 1.0)  # one float copy, scaled in place (a 4096 px image is 200 MB of it)
    out *= 255.0
    out += 0.5
    return out.astype(np.uint8)


def make_grid(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    cols: int | None = None,
    pad: int = 4,
    background: float = 1.0,
    tile_height: int | None = None,
) -> np.ndarray:
    """Tile float HWC images in [0, 1] into one grid, with an optional caption above each tile.

    Each column is as wide as its widest tile and each row as tall as its tallest, so a square panel beside a wide
    photo leaves no gap; smaller tiles sit top-left in their cell. ``tile_height`` first resizes every tile to
    that height (keeping its aspect ratio). Returns float32 HWC in [0, 1].
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
    cols = min(cols or len(tiles), len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    widths = [max(t.shape[1] for t in tiles[c::cols]) for c in range(cols)]
    heights = [max(t.shape[0] for t in tiles[r * cols : (r + 1) * cols]) for r in range(rows)]
    lh = _LABEL_H if labels is not None else 0
    lefts = [pad + sum(w + pad for w in widths[:c]) for c in range(cols)]
    tops = [pad + sum(h + lh + pad for h in heights[:r]) for r in range(rows)]
    H = sum(h + lh + pad for h in heights) + pad
    W = sum(w + pad for w in widths) + pad
    canvas = Image.new("RGB", (W, H), tuple([int(background * 255)] * 3))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        x, y = lefts[c], tops[r]
        if labels is not None and labels[i]:
            draw.text((x + 1, y + 1), str(labels[i])[: max(4, widths[c] // 6)], fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(tile), (x, y + lh))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def save_png(img: np.ndarray, path) -> Path:
    """Write a float HWC image in [0, 1] as an 8-bit PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(img)).save(path)
    return path
