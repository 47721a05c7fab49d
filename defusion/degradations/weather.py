"""Weather: haze (atmospheric scattering), rain streaks, raindrops on the lens, and snow."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .base import Degradation, register


def smooth_field(rng: np.random.Generator, h: int, w: int, cells: int = 6) -> np.ndarray:
    """A smooth random field in [0, 1]: coarse uniform noise upsampled bicubically."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = field.min(), field.max()
    return (field - lo) / (hi - lo + 1e-6)


def scene_depth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A plausible relative depth map in [0.1, 1]: far at the top (sky, horizon), near at the bottom,
    with a random tilt and smooth bumps. Used by haze and underwater, which have no depth sensor."""
    yy = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    tilt = np.float32(rng.uniform(-0.3, 0.3))
    base = np.clip(yy + tilt * xx, 0.0, 1.0)
    depth = 0.6 * base + 0.4 * smooth_field(rng, h, w)
    return (0.1 + 0.9 * depth).astype(np.float32)


def screen(img: np.ndarray, layer: np.ndarray, colour=1.0) -> np.ndarray:
    """Add a bright layer in [0, 1] the way light adds: img + layer * (colour - img)."""
    if layer.ndim == 2:
        layer = layer[..., None]
    return img + layer * (np.float32(colour) - img)


@register
@dataclass(frozen=True)
class Haze(Degradation):
    """Koschmieder scattering I = J t + A (1 - t), t = exp(-beta d), on a synthetic depth map d in [0.1, 1].

    ``beta`` is the extinction coefficient (beta = 2 x severity), ``airlight`` the brightness of the veil,
    ``tint`` a small colour cast of the airlight (R, G, B multipliers).
    """

    beta: float = 1.5
    airlight: float = 0.85
    tint: tuple = (1.0, 1.0, 1.0)

    name = "haze"
    aliases = ("fog", "dehaze", "hazy")
    dihedral_modes = (0, 4)  # far at the top: only a left-right flip keeps it upright
    primary = "beta"

    def __post_init__(self):
        self._check("beta", 0.0, 10.0)
        self._check("airlight", 0.0, 1.0)
        self._check_triple("tint", 0.5, 1.5)

    @classmethod
    def from_severity(cls, severity, rng):
        airlight = round(float(rng.uniform(0.7, 1.0)), 3)
        tint = tuple(round(float(x), 3) for x in 1.0 + rng.uniform(-0.06, 0.06, 3))
        return cls(beta=round(2.0 * severity, 3), airlight=airlight, tint=tint)

    def _apply(self, img, rng):
        if self.beta == 0:
            return img
        h, w, c = img.shape
        t = np.exp(-self.beta * scene_depth(rng, h, w))[..., None]
        a = np.float32(self.airlight) * np.asarray(self.tint, np.float32)
        if c == 1:
            a = a.mean(keepdims=True)
        return img * t + np.clip(a, 0, 1) * (1.0 - t)


@register
@dataclass(frozen=True)
class Rain(Degradation):
    """Rain streaks: thin bright lines of ``length`` px at ``angle`` degrees from vertical, ``width`` px wide.

    ``density`` is the fraction of pixels a streak starts on, times 100 (so 1.0 = one streak per 100
    pixels); ``opacity`` scales their brightness. Streaks are drawn anti-aliased, then softened along their
    direction, and added like light. density = 1.2 x severity, opacity = 0.35 + 0.5 x severity.
    """

    density: float = 0.6
    length: float = 20.0
    angle: float = 0.0
    width: int = 1
    opacity: float = 0.6

    name = "rain"
    aliases = ("derain", "rain_streak", "rain_streaks", "rainy")
    dihedral_modes = (0, 2, 4, 6)  # streaks near vertical (angle symmetric about 0): no 90-degree turns

    def __post_init__(self):
        self._check("density", 0.0, 10.0)
        self._check("length", 1.0, 200.0)
        self._check("angle", -80.0, 80.0)
        self._check("width", 1, 10)
        self._check("opacity", 0.0, 1.0)

    @classmethod
    def from_severity(cls, severity, rng):
        return cls(
            density=round(1.2 * severity, 4),
            length=round(float(rng.uniform(10.0, 35.0)), 2),
            angle=round(float(np.clip(rng.normal(0.0, 15.0), -45, 45)), 2),
            width=int(rng.choice([1, 1, 2])),
            opacity=round(0.35 + 0.5 * severity, 3),
        )

    def _apply(self, img, rng):
        h, w = img.shape[:2]
        n = int(round(self.density / 100.0 * h * w))
        if n == 0 or self.opacity == 0:
            return img
        layer = np.zeros((h, w), np.uint8)
        a = np.deg2rad(self.angle + rng.normal(0.0, 2.0, n))
        ln = self.length * rng.uniform(0.6, 1.4, n)
        x0 = rng.uniform(-0.2 * w, 1.2 * w, n)
        y0 = rng.uniform(-0.2 * h, 1.2 * h, n)
        x1, y1 = x0 + ln * np.sin(a), y0 + ln * np.cos(a)
        val = rng.uniform(120, 255, n)
        for i in range(n):
            cv2.line(layer, (int(x0[i]), int(y0[i])), (int(x1[i]), int(y1[i])), int(val[i]), self.width, cv2.LINE_AA)
        streaks = cv2.GaussianBlur(layer.astype(np.float32) / 255.0, (3, 3), 0.7)
        return screen(img, streaks * np.float32(self.opacity), colour=0.95)


@register
@dataclass(frozen=True)
class Raindrop(Degradation):
    """Water drops on the lens: each drop refracts an inverted, magnified and defocused view of the scene
    above it, with a darker rim and a small highlight.

    ``count`` is the number of drops per 512 x 512 pixels (count = 40 x severity), ``radius`` their mean
    radius in pixels, ``blur`` the defocus inside the drops (sigma in px).
    """

    count: float = 20.0
    radius: float = 14.0
    blur: float = 2.0

    name = "raindrop"
    aliases = ("raindrops", "drops", "water_drops")
    dihedral_modes = (0, 4)  # each drop shows the scene above it: only a left-right flip keeps it upright

    def __post_init__(self):
        self._check("count", 0.0, 500.0)
        self._check("radius", 2.0, 200.0)
        self._check("blur", 0.0, 20.0)

    @classmethod
    def from_severity(cls, severity, rng):
        return cls(
            count=round(40.0 * severity, 2),
            radius=round(float(rng.uniform(8.0, 20.0)), 2),
            blur=round(float(rng.uniform(1.0, 3.0)), 2),
        )

    def _apply(self, img, rng):
        h, w = img.shape[:2]
        n = int(round(self.count * h * w / 512.0**2))
        if n == 0:
            return img
        map_x, map_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        alpha = np.zeros((h, w), np.float32)
        shade = np.ones((h, w), np.float32)
        for _ in range(n):
            r = float(self.radius * rng.uniform(0.5, 1.5))
            elong = float(rng.uniform(1.0, 1.4))  # drops run down: taller than wide
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            mag = float(rng.uniform(1.5, 3.0))  # field of view seen through the drop, in drop radii
            x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
            y0, y1 = max(0, int(cy - r * elong) - 1), min(h, int(cy + r * elong) + 2)
            if x1 <= x0 or y1 <= y0:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            dx, dy = (xx - cx) / r, (yy - cy) / (r * elong)
            q = np.sqrt(dx**2 + dy**2)
            inside = q < 1.0
            # a ball lens inverts: the drop's top shows the scene below it and vice versa, magnified
            sx = cx - dx * r * mag
            sy = cy - dy * r * mag - r * 0.5
            sl = (slice(y0, y1), slice(x0, x1))
            map_x[sl] = np.where(inside, sx, map_x[sl])
            map_y[sl] = np.where(inside, sy, map_y[sl])
            edge = np.clip((1.0 - q) / 0.15, 0.0, 1.0)  # soft 15 % rim
            alpha[sl] = np.maximum(alpha[sl], np.where(inside, edge, 0.0))
            rim = np.where(inside, 1.0 - 0.35 * np.clip((q - 0.7) / 0.3, 0, 1), 1.0)
            hl = np.exp(-(((dx + 0.35) ** 2 + (dy + 0.4) ** 2) / 0.02)) * 0.6
            shade[sl] = np.where(inside, rim + hl, shade[sl])
        src = img if self.blur == 0 else cv2.GaussianBlur(img, (0, 0), self.blur).reshape(img.shape)
        drops = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101).reshape(img.shape)
        drops = drops * shade[..., None]
        a = alpha[..., None]
        return img * (1.0 - a) + drops * a


@register
@dataclass(frozen=True)
class Snow(Degradation):
    """Falling snow at three depths (far: small, sharp, many; near: large, defocused, few) plus a bright
    veil. ``density`` scales the flake count (density = severity), ``size`` the flake radius, ``angle``
    the wind direction from vertical (degrees) that smears near flakes into short streaks."""

    density: float = 0.5
    size: float = 1.0
    angle: float = 0.0
    veil: float = 0.1

    name = "snow"
    aliases = ("desnow", "snowy", "snowflakes")
    dihedral_modes = (0, 2, 4, 6)  # wind streaks near vertical (angle symmetric about 0): no 90-degree turns

    def __post_init__(self):
        self._check("density", 0.0, 5.0)
        self._check("size", 0.2, 5.0)
        self._check("angle", -80.0, 80.0)
        self._check("veil", 0.0, 0.8)

    @classmethod
    def from_severity(cls, severity, rng):
        return cls(
            density=round(float(severity), 4),
            size=round(float(rng.uniform(0.7, 1.5)), 3),
            angle=round(float(np.clip(rng.normal(0.0, 20.0), -60, 60)), 2),
            veil=round(0.2 * severity, 4),
        )

    # per layer: flakes per pixel at density 1, radius (px), defocus sigma (px), streak length (px)
    _LAYERS = ((4e-3, 0.8, 0.0, 0.0), (1.2e-3, 1.8, 0.8, 4.0), (2.5e-4, 3.5, 1.8, 8.0))

    def _apply(self, img, rng):
        h, w = img.shape[:2]
        if self.density == 0:
            return img
        flakes = np.zeros((h, w), np.float32)
        a = np.deg2rad(self.angle)
        for per_px, radius, sigma, streak in self._LAYERS:
            n = int(round(per_px * self.density * h * w))
            layer = np.zeros((h, w), np.uint8)
            xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
            rs = radius * self.size * rng.uniform(0.6, 1.4, n)
            vals = rng.uniform(160, 255, n)
            for x, y, r, v in zip(xs, ys, rs, vals):
                cv2.circle(layer, (int(x * 4), int(y * 4)), max(1, int(r * 4)), int(v), -1, cv2.LINE_AA, shift=2)
            lf = layer.astype(np.float32) / 255.0
            if streak > 0:
                k = max(3, int(streak * self.size) | 1)
                kern = np.zeros((k, k), np.float32)
                c = k // 2
                cv2.line(kern, (int(c - c * np.sin(a)), int(c - c * np.cos(a))), (int(c + c * np.sin(a)), int(c + c * np.cos(a))), 1.0, 1)
                lf = cv2.filter2D(lf, -1, kern / kern.sum())
            if sigma > 0:
                lf = cv2.GaussianBlur(lf, (0, 0), sigma * self.size)
            flakes = 1.0 - (1.0 - flakes) * (1.0 - np.clip(lf * 1.5, 0, 1))
        out = img * (1.0 - np.float32(self.veil)) + np.float32(self.veil * 0.9)
        return screen(out, flakes, colour=0.98)
