"""Sensor noise: additive white Gaussian noise (the AIO protocol) and Poisson-Gaussian (real-like) noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Degradation, register


NOISE_ESTIMATORS = ("pca", "wavelet")


def estimate_noise_sigma(img: np.ndarray, method: str = "wavelet") -> float:
    """Gaussian noise sigma (on [0, 1]) of an HWC or HW image.

    ``method="wavelet"``: skimage's wavelet median estimator (Donoho), averaged over channels; texture in the
    finest diagonal subband reads as noise, so it over-states sigma on textured images.
    ``method="pca"``: the patch-PCA estimator of Chen, Zhu and Heng (ICCV 2015, "An efficient statistical method
    for image noise level estimation") on colour patches: natural images fill only a few principal directions of
    their 8 x 8 x 3 patches (the channels move together), so the smallest eigenvalues of the patch covariance are
    noise alone; sigma^2 is the mean of the largest set of smallest eigenvalues whose mean is also its median. It
    assumes noise independent across channels, so a grey image (one channel, or three identical ones) gets the
    wavelet estimate instead, which reads one channel better (``benchmarks/noise_sigma.py``). Patches shrink (from
    8 px down to 2) on small images, so that there are at least 20 patches per patch dimension.
    """
    img = np.asarray(img, dtype=np.float32)
    if method not in NOISE_ESTIMATORS:
        raise ValueError(f"unknown noise estimator {method!r}; use one of {NOISE_ESTIMATORS}")
    grey = img.ndim == 2 or img.shape[-1] == 1 or all(np.array_equal(img[..., 0], img[..., c]) for c in range(1, img.shape[-1]))
    if method == "wavelet" or grey:
        from skimage.restoration import estimate_sigma

        return float(estimate_sigma(img, channel_axis=-1 if img.ndim == 3 else None, average_sigmas=True))
    return _pca_noise_sigma(img)


def _pca_noise_sigma(img: np.ndarray, max_patch: int = 8) -> float:
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"the PCA noise estimator needs an HW or HWC image, got shape {img.shape}")
    (h, w), c = img.shape[:2], img.shape[2]
    if min(h, w) < 4:
        raise ValueError(f"the PCA noise estimator needs an image of at least 4 x 4 px, got {img.shape[:2]}")
    # the largest patch, then the largest stride (at most 3), that still leaves 20 patches per dimension: with
    # fewer, the sample eigenvalues of pure noise spread out and the estimate drops
    for patch in range(min(max_patch, min(h, w) // 2), 1, -1):
        stride = next((s for s in (3, 2, 1) if ((h - patch) // s + 1) * ((w - patch) // s + 1) >= 20 * c * patch**2), 0)
        if stride:
            break
    patch, stride = (patch, stride) if stride else (2, 1)
    while ((h - patch) // stride + 1) * ((w - patch) // stride + 1) > 80_000:  # bounded memory on huge images
        stride += 1
    win = np.lib.stride_tricks.sliding_window_view(img.astype(np.float64), (patch, patch), axis=(0, 1))
    x = win[::stride, ::stride].reshape(-1, img.shape[2] * patch * patch)  # one row per patch, all channels
    x = x - x.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(x.T @ x / len(x)))  # ascending
    for n in range(len(eig), 0, -1):  # drop the largest eigenvalue until the rest is symmetric about its mean
        tail = eig[:n]
        tau = tail.mean()
        if np.count_nonzero(tail > tau) == np.count_nonzero(tail < tau):
            return float(np.sqrt(max(tau, 0.0)))
    return float(np.sqrt(max(eig[0], 0.0)))


def quantize8(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to the 8-bit grid, as saving the noisy image as a PNG would."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0) / 255.0


@register
@dataclass(frozen=True)
class GaussianNoise(Degradation):
    """AWGN with ``sigma`` on the 0-255 scale; ``quantize`` re-quantises to 8 bits like the AIO protocol
    (noisy = clip(clean + sigma * N(0, 1), 0, 255), stored as uint8). sigma = 50 x severity."""

    sigma: float = 25.0
    quantize: bool = True

    name = "noise"
    aliases = ("gaussian_noise", "awgn", "denoise")
    primary = "sigma"

    def __post_init__(self):
        self._check("sigma", 0.0, 255.0)
        if not isinstance(self.quantize, (bool, np.bool_)):
            raise ValueError(f"noise.quantize must be True or False, got {self.quantize!r}")

    @classmethod
    def from_severity(cls, severity, rng):
        return cls(sigma=round(50.0 * severity, 2))

    def _apply(self, img, rng):
        if self.sigma == 0:
            return img
        noisy = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(self.sigma / 255.0)
        return quantize8(noisy) if self.quantize else noisy


@register
@dataclass(frozen=True)
class PoissonGaussianNoise(Degradation):
    """Signal-dependent sensor noise: y = a * Poisson(x / a) + N(0, read_sigma / 255), then 8-bit quantised.

    ``shot`` is the gain a (variance of the shot noise per unit intensity; 0 disables it), ``read_sigma`` the
    read noise on the 0-255 scale; ``chroma`` in [0, 1] correlates the noise across colour channels less
    (0: the same noise on every channel, luminance-only; 1: independent per channel, like raw demosaicked noise).
    """

    shot: float = 0.01
    read_sigma: float = 4.0
    chroma: float = 1.0

    name = "poisson"
    aliases = ("poisson_gaussian", "real_noise", "shot_noise")

    def __post_init__(self):
        self._check("shot", 0.0, 1.0)
        self._check("read_sigma", 0.0, 255.0)
        self._check("chroma", 0.0, 1.0)

    @classmethod
    def from_severity(cls, severity, rng):
        return cls(
            shot=round(0.04 * severity, 5),
            read_sigma=round(10.0 * severity, 3),
            chroma=round(float(rng.uniform(0.3, 1.0)), 3),
        )

    def _apply(self, img, rng):
        if self.shot == 0 and self.read_sigma == 0:
            return img
        out = img.astype(np.float32)
        if self.shot > 0:
            shot = rng.poisson(img.astype(np.float64) / self.shot) * self.shot - img
            if img.shape[-1] == 3 and self.chroma < 1:
                lum = shot.mean(axis=-1, keepdims=True)
                shot = lum + self.chroma * (shot - lum)
            out = out + shot.astype(np.float32)
        if self.read_sigma > 0:
            out = out + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(self.read_sigma / 255.0)
        return quantize8(out)
