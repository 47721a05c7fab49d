"""Bundled sample images (see README.md here for their provenance and how they were made)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
SAMPLES = {
    "clean": "coffee.png",  # CC0 photo, cropped
    "degraded": "coffee_rain_noise.png",  # made by `defusion degrade` from coffee.png (see README.md)
}


def sample_path(kind: str = "degraded") -> Path:
    """Path of a bundled sample: ``"clean"`` or ``"degraded"``."""
    if kind not in SAMPLES:
        raise ValueError(f"unknown sample {kind!r}; choose from {sorted(SAMPLES)}")
    return ASSETS / SAMPLES[kind]
