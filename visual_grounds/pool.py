"""The pool of visual-ground elements and their composition into grounds.

A ground holds one element of each of the four categories of a TE42-like chart, laid out by a random
guillotine partition of the canvas (a grid, strips or an uneven mosaic). Everything is a pure function
of the seed, so ``GroundPool().sample(7)`` is the same ground on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from . import colors, natural, regular, stochastic
from ._canvas import check_size, finish

ElementFn = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]

CATEGORIES = ("regular", "stochastic", "natural", "color")

ELEMENTS: dict[str, dict[str, ElementFn]] = {
    "regular": dict(regular.ELEMENTS),
    "stochastic": dict(stochastic.ELEMENTS),
    "natural": dict(natural.ELEMENTS),
    "color": dict(colors.ELEMENTS),
}

DEFAULT_SIZE = 224  # the degradation tokenizer's input size


@dataclass(frozen=True)
class Part:
    category: str
    element: str
    box: tuple[int, int, int, int]  # (top, left, bottom, right), bottom/right exclusive


@dataclass(frozen=True)
class Ground:
    image: np.ndarray  # float32 HWC RGB in [0, 1]
    parts: tuple[Part, ...]
    seed: int | None = None

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(p.category for p in self.parts)


def as_rng(seed_or_rng) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    if seed_or_rng is None or isinstance(seed_or_rng, (int, np.integer)):
        return np.random.default_rng(seed_or_rng)
    raise ValueError(f"expected an int seed, None or a numpy Generator, got {type(seed_or_rng).__name__}")


def _partition(rng: np.random.Generator, box, n: int, jitter: float) -> list[tuple[int, int, int, int]]:
    """Split ``box`` into ``n`` rectangles by recursive straight cuts (guillotine layout)."""
    if n == 1:
        return [box]
    top, left, bottom, right = box
    h, w = bottom - top, right - left
    n_first = int(rng.integers(1, n))
    # cut across the longer side more often, so regions stay roughly square
    vertical_cut = rng.random() < (0.5 + 0.3 * np.sign(w - h))
    frac = n_first / n + rng.uniform(-jitter, jitter) / n
    if vertical_cut:
        cut = left + int(round(w * frac))
        a, b = (top, left, bottom, cut), (top, cut, bottom, right)
    else:
        cut = top + int(round(h * frac))
        a, b = (top, left, cut, right), (cut, left, bottom, right)
    return _partition(rng, a, n_first, jitter) + _partition(rng, b, n - n_first, jitter)


class GroundPool:
    """Samples visual grounds: one element per category, composed by a random layout.

    Args:
        size: ground size, an int or (height, width); at least 64 pixels a side.
        elements: optional replacement for the element table ``{category: {name: fn}}``; every category in
            ``CATEGORIES`` must have at least one element.
        natural_image_dir: optional folder of natural photos; crops of them join the ``natural`` category
            as the element ``"image_crop"``, drawn with probability ``natural_image_prob``.
    """

    def __init__(
        self,
        size=DEFAULT_SIZE,
        elements: Mapping[str, Mapping[str, ElementFn]] | None = None,
        natural_image_dir=None,
        natural_image_prob: float = 0.5,
    ):
        self.size = check_size(size)
        if min(self.size) < 64:
            raise ValueError(f"ground size must be at least 64 x 64, got {self.size}")
        table = {c: dict(e) for c, e in (elements or ELEMENTS).items()}
        missing = [c for c in CATEGORIES if not table.get(c)]
        if missing:
            raise ValueError(f"the element table has no elements for categories {missing}; needs {CATEGORIES}")
        self.elements = table
        self.image_crops = natural.ImageFolderElement(natural_image_dir) if natural_image_dir else None
        if not 0.0 <= natural_image_prob <= 1.0:
            raise ValueError(f"natural_image_prob must be in [0, 1], got {natural_image_prob}")
        self.natural_image_prob = natural_image_prob

    def element_names(self) -> dict[str, list[str]]:
        names = {c: sorted(e) for c, e in self.elements.items()}
        if self.image_crops is not None:
            names["natural"].append("image_crop")
        return names

    def render_element(self, category: str, name: str, rng, size) -> np.ndarray:
        if name == "image_crop" and category == "natural" and self.image_crops is not None:
            return self.image_crops(as_rng(rng), size)
        try:
            fn = self.elements[category][name]
        except KeyError:
            raise ValueError(f"unknown element {category}/{name}; known: {self.element_names()}") from None
        return fn(as_rng(rng), check_size(size))

    def _pick(self, rng: np.random.Generator, category: str) -> str:
        if category == "natural" and self.image_crops is not None and rng.random() < self.natural_image_prob:
            return "image_crop"
        names = sorted(self.elements[category])
        return names[int(rng.integers(len(names)))]

    def sample(self, seed=None) -> Ground:
        """One ground. ``seed`` is an int (reproducible), a numpy Generator, or None (fresh entropy)."""
        rng = as_rng(seed)
        h, w = self.size
        boxes = _partition(rng, (0, 0, h, w), len(CATEGORIES), jitter=0.35)
        order = rng.permutation(len(CATEGORIES))
        canvas = np.zeros((h, w, 3), np.float32)
        parts = []
        for box, k in zip(boxes, order):
            category = CATEGORIES[k]
            name = self._pick(rng, category)
            top, left, bottom, right = box
            canvas[top:bottom, left:right] = self.render_element(category, name, rng, (bottom - top, right - left))
            parts.append(Part(category, name, box))
        return Ground(finish(canvas), tuple(parts), seed if isinstance(seed, (int, np.integer)) else None)

    def __call__(self, seed=None) -> np.ndarray:
        return self.sample(seed).image

    def gallery(self, n: int = 16, seed: int = 0, cols: int = 4) -> np.ndarray:
        """``n`` grounds (seeds ``seed``, ``seed+1``, ...) in a labelled grid."""
        from defusion.images import make_grid

        grounds = [self.sample(seed + i) for i in range(n)]
        return make_grid([g.image for g in grounds], [f"seed {seed + i}" for i in range(n)], cols=cols)

    def element_gallery(self, seed: int = 0, tile: int = 128) -> np.ndarray:
        """Every element of every category, one row a category."""
        from defusion.images import make_grid

        images, labels = [], []
        names = self.element_names()
        cols = max(len(v) for v in names.values())
        for i, category in enumerate(CATEGORIES):
            row = names[category]
            for j in range(cols):
                if j < len(row):
                    images.append(self.render_element(category, row[j], seed + 97 * i + j, (tile, tile)))
                    labels.append(f"{category}/{row[j]}")
                else:
                    images.append(np.ones((tile, tile, 3), np.float32))
                    labels.append("")
        return make_grid(images, labels, cols=cols)


def blank_ground(size=DEFAULT_SIZE, color=None, seed=None) -> np.ndarray:
    """A solid-colour ground (the paper's 'blank grounding' ablation). Mid-grey by default."""
    h, w = check_size(size)
    if color is None:
        color = (0.5, 0.5, 0.5) if seed is None else tuple(as_rng(seed).uniform(0.2, 0.8, size=3))
    c = np.asarray(color, np.float32).reshape(-1)
    if c.size == 1:
        c = np.repeat(c, 3)
    if c.size != 3 or np.any(c < 0) or np.any(c > 1):
        raise ValueError(f"color must be one grey level or an RGB triple in [0, 1], got {color!r}")
    return np.broadcast_to(c, (h, w, 3)).astype(np.float32)


def simple_ground(size=DEFAULT_SIZE, seed=None, period: int | None = None) -> np.ndarray:
    """Black/white stripes of one period and orientation (the paper's 'simple grounding' ablation)."""
    h, w = check_size(size)
    rng = as_rng(seed)
    period = int(period or rng.choice([8, 12, 16, 24]))
    if period < 2:
        raise ValueError(f"period must be at least 2 pixels, got {period}")
    horizontal = rng.random() < 0.5
    idx = np.arange(h if horizontal else w)
    stripe = ((idx // (period // 2)) % 2).astype(np.float32)
    img = np.tile(stripe[:, None], (1, w)) if horizontal else np.tile(stripe[None, :], (h, 1))
    return np.repeat((0.1 + 0.8 * img)[..., None], 3, axis=-1).astype(np.float32)
