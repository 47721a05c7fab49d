"""Seeded, parameterised, composable degradation operators and their registry.

    >>> from defusion import degradations as D
    >>> spec = D.Rain.sample(rng=0, severity=0.6)          # a frozen, JSON-serialisable spec
    >>> rainy = spec.apply(img, rng=1)                      # float32 HWC in [0, 1]
    >>> both = D.parse("rain+noise25")                      # Compose, order kept
    >>> D.names()                                            # registered names
"""

import dataclasses

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


def sample(rng=None, kinds=None, max_mix: int = 3, p_single: float = 0.6, severity=None, weights=None,
           params=None) -> Degradation:  # fmt: skip
    """A random degradation for training data: one kind (probability ``p_single``) or an ordered mixture
    of 2..``max_mix`` distinct kinds drawn from ``kinds`` (default: every registered name). ``weights`` (one
    positive number per kind) makes some kinds more frequent; None draws them uniformly. ``severity`` is what
    ``Degradation.sample`` takes (None, a number or a ``(lo, hi)`` range), or a dict from kind name to one of
    those, for a per-kind range (kinds it does not name: None). ``params`` draws single parameters apart from
    the severity: ``{"low_light": {"noise": (0.1, 12.0, "log")}}`` gives every low-light step a read noise
    log-uniform in [0.1, 12] whatever its darkness (``"uniform"`` draws uniformly); a fourth number, the share,
    draws it for that share of the steps only (the others keep their severity's value); see ``check_params``."""
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
    if params:
        params = check_params(params)
        steps = [_draw_params(step, params.get(step.name), rng) for step in steps]
    return steps[0] if k == 1 else Compose(steps)


_SCALES = ("uniform", "log")


def check_params(params: dict) -> dict:
    """Validate ``sample``'s ``params``: registered kinds, their float fields, draws ``(lo, hi, scale[, share])``
    with lo <= hi, a known scale (a log scale needs lo > 0) and a share in (0, 1] (default 1). Returns them keyed
    by registry name as ``(lo, hi, scale, share)``; raises ``ValueError`` naming what is wrong."""
    out = {}
    for kind, fields in params.items():
        cls = get(kind)
        floats = {f.name for f in dataclasses.fields(cls) if f.type in (float, "float")}
        for field, draw in fields.items():
            if field not in floats:
                raise ValueError(f"{cls.name} has no number parameter {field!r}; it has {sorted(floats)}")
            if len(draw) not in (3, 4) or draw[2] not in _SCALES:
                raise ValueError(f"{cls.name}.{field}: a draw is (lo, hi, scale[, share]) with scale in {_SCALES}, "
                                 f"got {draw!r}")  # fmt: skip
            lo, hi, scale, share = float(draw[0]), float(draw[1]), draw[2], float(draw[3]) if len(draw) == 4 else 1.0
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi or (scale == "log" and lo <= 0):
                raise ValueError(f"{cls.name}.{field}: needs finite lo <= hi (lo > 0 on a log scale), got {draw!r}")
            if not 0.0 < share <= 1.0:
                raise ValueError(f"{cls.name}.{field}: the share must be in (0, 1], got {draw!r}")
            dataclasses.replace(cls(), **{field: lo})  # the operator's own range check
            dataclasses.replace(cls(), **{field: hi})
            out.setdefault(cls.name, {})[field] = (lo, hi, scale, share)
    return out


def _draw_params(step: Degradation, fields: dict | None, rng) -> Degradation:
    if not fields:
        return step
    values = {}
    for field, (lo, hi, scale, share) in fields.items():
        if share < 1.0 and rng.random() >= share:
            continue
        v = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if scale == "log" else float(rng.uniform(lo, hi))
        values[field] = round(v, 4)
    return dataclasses.replace(step, **values)


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
    "check_params",
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
