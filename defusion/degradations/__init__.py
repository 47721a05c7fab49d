"""Seeded, parameterised, composable degradation operators and their registry.

    >>> from defusion import degradations as D
    >>> spec = D.Rain.sample(rng=0, severity=0.6)          # a frozen, JSON-serialisable spec
    >>> rainy = spec.apply(img, rng=1)                      # float32 HWC in [0, 1]
    >>> both = D.parse("rain+noise25")                      # Compose, order kept
    >>> D.names()                                            # registered names
"""

import numpy as np

from .base import (
    REGISTRY,
    Compose,
    Degradation,
    as_rng,
    check_severity,
    ensemble_symmetry,
    from_dict,
    from_json,
    get,
    names,
    parse,
    register,
)
from .blur import DefocusBlur, GaussianBlur, MotionBlur, ResizeBlur
from .compression import JPEG
from .noise import GaussianNoise, PoissonGaussianNoise
from .photometric import LowLight, Underwater
from .weather import Haze, Rain, Raindrop, Snow


def sample(rng=None, kinds=None, max_mix: int = 3, p_single: float = 0.6, severity=None, weights=None) -> Degradation:
    """A random degradation for training data: one kind (probability ``p_single``) or an ordered mixture
    of 2..``max_mix`` distinct kinds drawn from ``kinds`` (default: every registered name). ``weights`` (one
    positive number per kind) makes some kinds more frequent; None draws them uniformly. ``severity`` is what
    ``Degradation.sample`` takes (None, a number or a ``(lo, hi)`` range), or a dict from kind name to one of
    those, for a per-kind range (kinds it does not name: None)."""
    rng = as_rng(rng)
    pool = [get(k) for k in (kinds or names())]
    if not pool:
        raise ValueError("kinds is empty")
    if len({d.name for d in pool}) != len(pool):
        raise ValueError(f"kinds repeat a name: {[d.name for d in pool]}; use weights to make a kind more frequent")
    p = None
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(pool),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"weights must be {len(pool)} positive numbers, one per kind, got {weights!r}")
        p = w / w.sum()
    k = 1 if (rng.random() < p_single or len(pool) == 1) else int(rng.integers(2, min(max_mix, len(pool)) + 1))
    idx = rng.choice(len(pool), size=k, replace=False, p=p)
    if isinstance(severity, dict):
        per_kind = {get(k).name: v for k, v in severity.items()}
        steps = [pool[i].sample(rng, per_kind.get(pool[i].name)) for i in idx]
    else:
        steps = [pool[i].sample(rng, severity) for i in idx]
    return steps[0] if k == 1 else Compose(steps)


def sample_named(name: str, rng=None) -> Degradation:
    """A spec for data named by a string like ``"rain"`` or ``"jpeg15+noise10"``: the numbers given stay fixed,
    the other parameters are drawn at a severity uniform in [0.3, 1]. Real pairs labelled ``name`` and clean images
    degraded by ``name`` (fine-tuning on one's own data) get their specs this way."""
    rng = as_rng(rng)
    return parse(name, severity=float(rng.uniform(0.3, 1.0)), rng=rng)


__all__ = [
    "JPEG",
    "REGISTRY",
    "Compose",
    "DefocusBlur",
    "Degradation",
    "GaussianBlur",
    "GaussianNoise",
    "Haze",
    "LowLight",
    "MotionBlur",
    "PoissonGaussianNoise",
    "Rain",
    "Raindrop",
    "ResizeBlur",
    "Snow",
    "Underwater",
    "as_rng",
    "check_severity",
    "ensemble_symmetry",
    "from_dict",
    "from_json",
    "get",
    "names",
    "parse",
    "register",
    "sample",
    "sample_named",
]
