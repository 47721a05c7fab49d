"""Sensor noise: additive white Gaussian noise (the AIO protocol) and Poisson-Gaussian (real-like) noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Degradation, register


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
