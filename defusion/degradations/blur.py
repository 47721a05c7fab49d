"""Blur: Gaussian, motion (random camera-shake trajectories), defocus (disk) and resize blur."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .base import Degradation, register


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate every channel with ``kernel`` (reflect borders); keeps the HWC shape for 1 channel."""
    out = cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)


@register
@dataclass(frozen=True)
class GaussianBlur(Degradation):
    """Isotropic Gaussian blur of standard deviation ``sigma`` pixels (sigma = 4 x severity)."""

    sigma: float = 1.5

    name = "blur"
    aliases = ("gaussian_blur", "deblur")
    primary = "sigma"

    def __post_init__(self):
        self._check("sigma", 0.0, 50.0)

    @classmethod
    def from_severity(cls, severity, rng):
        return cls(sigma=round(4.0 * severity, 3))

    def _apply(self, img, rng):
        if self.sigma < 0.05:
            return img
        k = 2 * int(np.ceil(3 * self.sigma)) + 1
        out = cv2.GaussianBlur(img, (k, k), self.sigma, borderType=cv2.BORDER_REFLECT_101)
        return out.reshape(img.shape)


def motion_kernel(length: float, angle: float, curvature: float, rng: np.random.Generator) -> np.ndarray:
    """Rasterise a random camera-shake trajectory of total ``length`` pixels into a normalised kernel.

    The path starts along ``angle`` (degrees) and turns by a random walk whose step size grows with
    ``curvature`` (0: a straight line); positions are splatted bilinearly at sub-pixel spacing.
    """
    n = max(8, int(np.ceil(length * 4)))
    step = length / n
    turns = rng.standard_normal(n) * curvature * 0.25
    heading = np.deg2rad(angle) + np.cumsum(turns)
    xs = np.concatenate([[0.0], np.cumsum(step * np.cos(heading))])
    ys = np.concatenate([[0.0], np.cumsum(step * np.sin(heading))])
    xs -= (xs.max() + xs.min()) / 2
    ys -= (ys.max() + ys.min()) / 2
    half = int(np.ceil(max(np.abs(xs).max(), np.abs(ys).max()))) + 1
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.float64)
    px, py = xs + half, ys + half
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    fx, fy = px - x0, py - y0
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), wgt)
    return (kernel / kernel.sum()).astype(np.float32)


@register
@dataclass(frozen=True)
class MotionBlur(Degradation):
    """Camera-shake blur along a random trajectory of ``length`` pixels starting at ``angle`` degrees.

    ``curvature`` bends the path (0: linear motion). The trajectory itself is drawn from the rng at
    ``apply`` time, so image and ground get the same kind and extent of shake, not the same kernel.
    length = 1 + 24 x severity (0 at severity 0).
    """

    length: float = 12.0
    angle: float = 0.0
    curvature: float = 0.3

    name = "motion_blur"
    aliases = ("motion", "camera_shake")
    primary = "length"

    def __post_init__(self):
        self._check("length", 0.0, 200.0)
        self._check("angle", -360.0, 360.0)
        self._check("curvature", 0.0, 1.0)

    @classmethod
    def from_severity(cls, severity, rng):
        angle = round(float(rng.uniform(0.0, 180.0)), 2)
        curvature = round(float(rng.uniform(0.0, 0.6)), 3)
        return cls(length=round(1.0 + 24.0 * severity, 2) if severity > 0 else 0.0, angle=angle, curvature=curvature)

    def _apply(self, img, rng):
        if self.length < 1.0:
            return img
        return filter2d(img, motion_kernel(self.length, self.angle, self.curvature, rng))


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Anti-aliased uniform disk (the point-spread function of an out-of-focus lens)."""
    half = int(np.ceil(radius)) + 1
    n = (2 * half + 1) * supersample
    c = (np.arange(n) + 0.5) / supersample - (half + 0.5)
    inside = (c[None, :] ** 2 + c[:, None] ** 2) <= radius**2
    k = inside.reshape(2 * half + 1, supersample, 2 * half + 1, supersample).mean(axis=(1, 3))
    return (k / k.sum()).astype(np.float32)


@register
@dataclass(frozen=True)
class DefocusBlur(Degradation):
    """Out-of-focus blur: a uniform disk of ``radius`` pixels (radius = 8 x severity)."""

    radius: float = 3.0

    name = "defocus"
    aliases = ("defocus_blur", "out_of_focus")
    primary = "radius"

    def __post_init__(self):
        self._check("radius", 0.0, 50.0)

    @classmethod
    def from_severity(cls, severity, rng):
        return cls(radius=round(8.0 * severity, 3))

    def _apply(self, img, rng):
        if self.radius < 0.5:
            return img
        return filter2d(img, disk_kernel(self.radius))


_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


@register
@dataclass(frozen=True)
class ResizeBlur(Degradation):
    """Down-sample by ``scale`` with ``down`` interpolation and back up (bicubic): loss of detail and
    aliasing as in low-resolution capture. scale = 0.2 ** severity (1 at 0, 0.2 at 1)."""

    scale: float = 0.5
    down: str = "bicubic"

    name = "resize"
    aliases = ("resize_blur", "downsample", "low_resolution")
    primary = "scale"

    def __post_init__(self):
        self._check("scale", 0.05, 1.0)
        self._check_choice("down", _INTERP)

    @classmethod
    def from_severity(cls, severity, rng):
        down = str(rng.choice(["nearest", "bilinear", "bicubic", "area"], p=[0.1, 0.3, 0.3, 0.3]))
        return cls(scale=round(0.2**severity, 4), down=down)

    def _apply(self, img, rng):
        if self.scale >= 1.0:
            return img
        h, w = img.shape[:2]
        sh, sw = max(1, round(h * self.scale)), max(1, round(w * self.scale))
        small = cv2.resize(img, (sw, sh), interpolation=_INTERP[self.down])
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(img.shape)
