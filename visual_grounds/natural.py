"""Natural-like textures: procedural stand-ins for the natural images of a TE42 chart.

Fractal Brownian noise (clouds, terrain), Gabor noise (oriented fabric-like texture), Voronoi cells
(stones, cells), marble and wood. ``ImageFolderElement`` adds crops of natural photos from a folder
the user supplies; the package ships none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ._canvas import centred_grid, check_size, finish, normalise, palette, resize, spectral_noise


def _random_stops(rng: np.random.Generator, k: int = 4) -> np.ndarray:
    """A smooth random palette: colours drawn around a random hue with rising lightness."""
    base = rng.uniform(0.1, 0.9, size=3)
    light = np.linspace(0.15, 0.95, k)[:, None]
    jitter = rng.uniform(-0.15, 0.15, size=(k, 3))
    return np.clip(light * (0.4 + 0.6 * base) + jitter * 0.5 + 0.1 * base, 0, 1).astype(np.float32)


def fbm(rng: np.random.Generator, size) -> np.ndarray:
    """Fractal Brownian motion (spectral synthesis, beta ~ 3): clouds and terrain under a palette."""
    h, w = check_size(size)
    field = normalise(spectral_noise(rng, h, w, rng.uniform(2.6, 3.4))[..., 0])
    return palette(rng, _random_stops(rng, 5), field)


def gabor_noise(rng: np.random.Generator, size) -> np.ndarray:
    """Sparse-convolution Gabor noise: random impulses convolved with one oriented Gabor kernel."""
    h, w = check_size(size)
    freq = rng.uniform(0.05, 0.2)  # cycles per pixel
    theta = rng.uniform(0, np.pi)
    sigma = rng.uniform(1.5, 3.0) / freq / 2.0
    impulses = np.zeros((h, w), np.float32)
    n = int(h * w / (sigma * sigma) * 2) + 16
    impulses[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.choice([-1.0, 1.0], n)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    u = fx * np.cos(theta) + fy * np.sin(theta)
    v = -fx * np.sin(theta) + fy * np.cos(theta)
    # Fourier transform of a Gabor kernel: two Gaussians at +/- the carrier frequency
    g = np.exp(-2 * np.pi**2 * sigma**2 * ((u - freq) ** 2 + v**2))
    g += np.exp(-2 * np.pi**2 * sigma**2 * ((u + freq) ** 2 + v**2))
    field = np.real(np.fft.ifft2(np.fft.fft2(impulses) * g))
    field = 0.5 + 0.5 * field / (3 * field.std() + 1e-8)
    return palette(rng, _random_stops(rng, 3), np.clip(field, 0, 1))


def voronoi(rng: np.random.Generator, size) -> np.ndarray:
    """Voronoi cells with random shades and dark borders (stones, cells, cobbles)."""
    h, w = check_size(size)
    n = int(rng.integers(12, 48))
    pts = np.stack([rng.uniform(0, h, n), rng.uniform(0, w, n)], axis=1).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    part = np.partition(d, 1, axis=-1)
    nearest = np.argmin(d, axis=-1)
    edge = np.sqrt(part[..., 1]) - np.sqrt(part[..., 0])  # ~2x distance to the cell border
    colours = _random_stops(rng, n)[rng.permutation(n)]
    img = colours[nearest]
    shade = np.clip(edge / rng.uniform(2.0, 5.0), 0, 1)[..., None]
    return finish(img * (0.25 + 0.75 * shade))


def marble(rng: np.random.Generator, size) -> np.ndarray:
    """Marble veins: a sine of position perturbed by turbulence."""
    h, w = check_size(size)
    x, y = centred_grid(h, w)
    turb = spectral_noise(rng, h, w, 3.0)[..., 0]
    a = rng.uniform(0, np.pi)
    f = rng.uniform(3.0, 8.0)
    t = np.sin(2 * np.pi * f * (x * np.cos(a) + y * np.sin(a)) + rng.uniform(0.6, 1.4) * turb)
    t = np.abs(t) ** rng.uniform(0.3, 0.7)
    return palette(rng, _random_stops(rng, 3)[::-1], t)


def wood(rng: np.random.Generator, size) -> np.ndarray:
    """Wood grain: perturbed growth rings in brown tones."""
    h, w = check_size(size)
    x, y = centred_grid(h, w, center=(rng.uniform(-0.5, 1.5), rng.uniform(-0.5, 1.5)))
    turb = spectral_noise(rng, h, w, 3.2)[..., 0]
    r = np.hypot(x * rng.uniform(1.0, 3.0), y) + 0.03 * turb
    rings = (r * rng.uniform(4.0, 10.0)) % 1.0
    stops = np.array([[0.35, 0.2, 0.1], [0.6, 0.4, 0.22], [0.78, 0.6, 0.4]], np.float32)
    stops = np.clip(stops * rng.uniform(0.8, 1.15), 0, 1)
    return palette(rng, stops, rings**0.6)


class ImageFolderElement:
    """Random crops of the images in a folder, as the 'natural image' element of a ground.

    The folder is read once; each call picks an image, a random crop of random scale and resizes it to
    the requested size. Images that cannot be decoded raise a clear error naming the file.
    """

    EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}

    def __init__(self, folder):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"natural image folder {self.folder} does not exist or is not a folder")
        self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in self.EXTENSIONS)
        if not self.files:
            raise ValueError(f"natural image folder {self.folder} holds no images ({sorted(self.EXTENSIONS)})")

    def __call__(self, rng: np.random.Generator, size) -> np.ndarray:
        h, w = check_size(size)
        path = self.files[int(rng.integers(len(self.files)))]
        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        except OSError as e:
            raise ValueError(f"cannot read natural image {path}: {e}") from e
        ih, iw = img.shape[:2]
        scale = rng.uniform(0.3, 1.0)
        ch = max(8, min(ih, int(round(min(ih, iw * h / w) * scale))))
        cw = max(8, min(iw, int(round(ch * w / h))))
        y0 = int(rng.integers(0, ih - ch + 1))
        x0 = int(rng.integers(0, iw - cw + 1))
        return resize(img[y0 : y0 + ch, x0 : x0 + cw], (h, w))


ELEMENTS = {
    "fbm": fbm,
    "gabor_noise": gabor_noise,
    "voronoi": voronoi,
    "marble": marble,
    "wood": wood,
}
