"""Photometric degradations: low light and underwater colour attenuation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Degradation, register
from .noise import quantize8
from .weather import scene_depth


@register
@dataclass(frozen=True)
class LowLight(Degradation):
    """Under-exposure: y = exposure * x ** gamma, then signal-dependent sensor noise amplified by the low
    signal, and 8-bit quantisation (which bands the shadows, as in real low-light JPEGs).

    exposure = 1 - 0.88 x severity, gamma = 1 + 1.2 x severity, noise = 12 x severity (0-255 scale,
    read-noise equivalent). A number in a name sets the noise: ``low_light0.5`` is as dark as its severity says
    but nearly clean, like real dark photos from a good sensor (LOL's are about this clean at severity 0.8-1).
    """

    exposure: float = 0.3
    gamma: float = 1.5
    noise: float = 5.0

    name = "low_light"
    primary = "noise"
    aliases = ("lowlight", "dark", "low_light_enhancement", "underexposure")

    def __post_init__(self):
        self._check("exposure", 0.01, 1.0)
        self._check("gamma", 0.2, 5.0)
        self._check("noise", 0.0, 100.0)

    @classmethod
    def from_severity(cls, severity, rng):
        return cls(
            exposure=round(1.0 - 0.88 * severity, 4),
            gamma=round(1.0 + 1.2 * severity, 4),
            noise=round(12.0 * severity, 3),
        )

    def _apply(self, img, rng):
        if self.exposure == 1.0 and self.gamma == 1.0 and self.noise == 0:
            return img
        dark = np.float32(self.exposure) * np.power(img, np.float32(self.gamma))
        if self.noise == 0:
            return quantize8(dark)
        sigma = self.noise / 255.0
        # shot-like part grows with the signal, read part is constant; split the budget evenly
        std = np.sqrt(0.5 * sigma**2 + 0.5 * sigma * dark).astype(np.float32)
        return quantize8(dark + std * rng.standard_normal(img.shape, dtype=np.float32))


@register
@dataclass(frozen=True)
class Underwater(Degradation):
    """Underwater image formation: I = J exp(-c d D) + B (1 - exp(-c d D)) per colour channel.

    ``attenuation`` c (per unit distance) is largest for red; ``backscatter`` B is the blue-green veil;
    ``distance`` D scales a synthetic depth map d in [0.1, 1] (distance = 3 x severity).
    """

    distance: float = 1.5
    attenuation: tuple = (1.0, 0.3, 0.2)
    backscatter: tuple = (0.05, 0.45, 0.55)

    name = "underwater"
    aliases = ("water", "underwater_enhancement")
    dihedral_modes = (0, 4)  # far at the top: only a left-right flip keeps it upright

    def __post_init__(self):
        self._check("distance", 0.0, 20.0)
        self._check_triple("attenuation", 0.0, 5.0)
        self._check_triple("backscatter", 0.0, 1.0)

    @classmethod
    def from_severity(cls, severity, rng):
        # ocean (blue) to coastal (green) water types
        greenish = float(rng.uniform(0.0, 1.0))
        att = (rng.uniform(0.8, 1.4), 0.15 + 0.2 * (1 - greenish), 0.15 + 0.25 * greenish)
        back = (rng.uniform(0.02, 0.1), 0.35 + 0.2 * greenish, 0.55 - 0.2 * greenish)
        return cls(
            distance=round(3.0 * severity, 4),
            attenuation=tuple(round(float(x), 4) for x in att),
            backscatter=tuple(round(float(x), 4) for x in back),
        )

    def _apply(self, img, rng):
        if self.distance == 0:
            return img
        h, w, c = img.shape
        d = scene_depth(rng, h, w)[..., None] * np.float32(self.distance)
        att = np.asarray(self.attenuation, np.float32)
        back = np.asarray(self.backscatter, np.float32)
        if c == 1:
            att, back = att.mean(keepdims=True), back.mean(keepdims=True)
        t = np.exp(-att * d)
        return img * t + back * (1.0 - t)
