"""TE42-like visual grounds for visual instructions (numpy + Pillow only).

Four categories of chart elements (``regular``, ``stochastic``, ``natural``, ``color``), each a set of
seeded generators ``fn(rng, (h, w)) -> float32 HWC in [0, 1]``, and a ``GroundPool`` that draws one element
of each category and composes them into a ground.

    >>> from visual_grounds import GroundPool
    >>> ground = GroundPool(size=224).sample(seed=0)
    >>> ground.image.shape, ground.categories
"""

from .natural import ImageFolderElement
from .pool import CATEGORIES, DEFAULT_SIZE, ELEMENTS, Ground, GroundPool, Part, blank_ground, simple_ground

__all__ = [
    "CATEGORIES",
    "DEFAULT_SIZE",
    "ELEMENTS",
    "Ground",
    "GroundPool",
    "ImageFolderElement",
    "Part",
    "blank_ground",
    "simple_ground",
]
