"""Degradation specs, the registry and composition.

A degradation is a frozen dataclass whose fields are its parameters: the instance *is* the spec. It is

* sampled:   ``spec = Rain.sample(rng, severity)`` with severity in [0, 1] (0 = identity where the physics
  allows it, 1 = the strongest setting we train on); nuisance parameters (angles, kernels) come from ``rng``;
* applied:   ``spec.apply(img, rng)`` on float32 HWC in [0, 1] (1 or 3 channels), deterministic given ``rng``;
* serialised: ``spec.to_dict()`` / ``from_dict(d)`` round-trip through JSON.

The same spec degrades a training image and its visual ground, so the instruction shows the same kind and
strength of degradation. ``Compose`` applies an ordered list.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, ClassVar, Iterable

import numpy as np

from ..images import check_image

REGISTRY: dict[str, type["Degradation"]] = {}
_ALIASES: dict[str, str] = {}


def as_rng(rng) -> np.random.Generator:
    """``None`` -> seed 0 (deterministic by default), an int -> that seed, a Generator -> itself."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def check_severity(severity) -> float:
    try:
        s = float(severity)
    except (TypeError, ValueError):
        raise ValueError(f"severity must be a number in [0, 1], got {severity!r}") from None
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {s}")
    return s


def register(cls):
    """Class decorator: add a degradation to the registry under ``cls.name`` and ``cls.aliases``."""
    if cls.name in REGISTRY:
        raise ValueError(f"degradation name {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls
    for alias in cls.aliases:
        _ALIASES[alias] = cls.name
    return cls


def names() -> list[str]:
    """The registered degradation names (canonical ones, not aliases), sorted."""
    return sorted(REGISTRY)


def get(name: str) -> type["Degradation"]:
    """The degradation class registered under ``name`` (or one of its aliases)."""
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in REGISTRY:
        raise ValueError(f"unknown degradation {name!r}; valid names: {', '.join(names())}")
    return REGISTRY[key]


class Degradation:
    """Base class. Subclasses are ``@register``-ed frozen dataclasses that implement ``from_severity``
    and ``_apply`` and validate their fields with ``_check`` in ``__post_init__``."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    primary: ClassVar[str | None] = None  # field set by a number in a name string, e.g. "noise25"
    identity_at_zero: ClassVar[bool] = True  # False where severity 0 can only be near-identity (JPEG)
    # The rotations/flips (numbered as ``defusion.ensemble.dihedral``: 0 identity, 1-3 rotations by 90/180/270
    # degrees, 4-7 the same after a left-right flip) that map a sample of this degradation onto one it could
    # have drawn. Training applies them to the clean crop before degrading it, so a test-time ensemble
    # (``defusion.ensemble.ensemble_plan``) must keep to these: rotated rain streaks or upside-down haze are
    # inputs the model has never seen (``ensemble_symmetry``).
    dihedral_modes: ClassVar[tuple[int, ...]] = (0, 1, 2, 3, 4, 5, 6, 7)
    grid_shifts: ClassVar[bool] = True  # False where a one-pixel shift moves it off a pixel grid (JPEG blocks)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def sample(cls, rng=None, severity=None) -> "Degradation":
        """Draw a spec at ``severity`` in [0, 1]; ``None`` draws the severity uniformly from [0.1, 1] and a
        ``(lo, hi)`` pair uniformly from [lo, hi]."""
        rng = as_rng(rng)
        if severity is None:
            severity = (0.1, 1.0)
        if isinstance(severity, (tuple, list)):
            if len(severity) != 2:
                raise ValueError(f"a severity range is a (lo, hi) pair, got {severity!r}")
            lo, hi = check_severity(severity[0]), check_severity(severity[1])
            if lo > hi:
                raise ValueError(f"severity range ({lo}, {hi}) has lo > hi")
            s = float(rng.uniform(lo, hi))
        else:
            s = check_severity(severity)
        return cls.from_severity(s, rng)

    @classmethod
    def from_severity(cls, severity: float, rng: np.random.Generator) -> "Degradation":
        raise NotImplementedError  # abstract: every registered operator implements it

    def _check(self, field: str, lo: float, hi: float) -> None:
        v = getattr(self, field)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{self.name}.{field} must be a number in [{lo}, {hi}], got {v!r}")
        if not (lo <= float(v) <= hi) or not np.isfinite(v):
            raise ValueError(f"{self.name}.{field} must be in [{lo}, {hi}], got {v}")
        object.__setattr__(self, field, float(v) if isinstance(lo, float) or isinstance(hi, float) else int(v))

    def _check_choice(self, field: str, choices: Iterable[str]) -> None:
        v = getattr(self, field)
        if v not in tuple(choices):
            raise ValueError(f"{self.name}.{field} must be one of {tuple(choices)}, got {v!r}")

    def _check_triple(self, field: str, lo: float, hi: float) -> None:
        v = getattr(self, field)
        try:
            t = tuple(float(x) for x in v)
        except TypeError:
            raise ValueError(f"{self.name}.{field} must be three numbers in [{lo}, {hi}], got {v!r}") from None
        if len(t) != 3 or not all(lo <= x <= hi for x in t):
            raise ValueError(f"{self.name}.{field} must be three numbers in [{lo}, {hi}], got {v!r}")
        object.__setattr__(self, field, t)

    # ---- application --------------------------------------------------------------------------
    def apply(self, img: np.ndarray, rng=None) -> np.ndarray:
        """Degrade a float32 HWC image in [0, 1]. ``rng``: Generator, int seed, or None (= seed 0)."""
        img = check_image(img)
        out = self._apply(img, as_rng(rng))
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)

    __call__ = apply

    def _apply(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError  # abstract: every registered operator implements it

    @property
    def steps(self) -> tuple["Degradation", ...]:
        return (self,)

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``noise(sigma=25)``."""
        if self.primary is not None:
            return f"{self.name}({self.primary}={_fmt(getattr(self, self.primary))})"
        return self.name

    # ---- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


@dataclasses.dataclass(frozen=True)
class Compose(Degradation):
    """An ordered composition: ``Compose([Rain(...), GaussianNoise(...)])`` rains first, then adds noise."""

    steps_: tuple[Degradation, ...] = ()
    name: ClassVar[str] = "compose"

    def __init__(self, steps: Iterable[Degradation] = ()):
        flat: list[Degradation] = []
        for s in steps:
            if not isinstance(s, Degradation):
                raise TypeError(f"Compose takes Degradation specs, got {type(s).__name__}")
            flat.extend(s.steps)  # nested compositions flatten: order is all that matters
        object.__setattr__(self, "steps_", tuple(flat))

    @property
    def steps(self) -> tuple[Degradation, ...]:
        return self.steps_

    def __len__(self) -> int:
        return len(self.steps_)

    def __iter__(self):
        return iter(self.steps_)

    def _apply(self, img, rng):
        for step in self.steps_:
            img = np.clip(step._apply(img, rng), 0.0, 1.0).astype(np.float32, copy=False)
        return img

    @property
    def label(self) -> str:
        return "+".join(s.label for s in self.steps_) or "identity"

    @property
    def names(self) -> str:
        return "+".join(s.name for s in self.steps_)

    def to_dict(self) -> dict[str, Any]:
        return {"name": "compose", "steps": [s.to_dict() for s in self.steps_]}

    def __repr__(self) -> str:
        return f"Compose({list(self.steps_)!r})"


def ensemble_symmetry(spec: Degradation | None) -> tuple[tuple[int, ...], bool]:
    """(dihedral modes, grid shifts allowed) that every step of ``spec`` is invariant to; None: all of them."""
    modes, shifts = set(range(8)), True
    for step in (spec.steps if spec is not None else ()):
        modes &= set(step.dihedral_modes)
        shifts = shifts and step.grid_shifts
    return tuple(sorted(modes)), shifts


def from_dict(d: dict[str, Any]) -> Degradation:
    """Rebuild a spec (or a ``Compose``) from ``to_dict()`` output."""
    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"a degradation spec dict needs a 'name' key, got {d!r}")
    d = dict(d)
    name = d.pop("name")
    if name == "compose":
        return Compose(from_dict(s) for s in d.get("steps", []))
    cls = get(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
        raise ValueError(f"unknown parameters {sorted(unknown)} for {cls.name}; valid: {sorted(fields)}")
    return cls(**d)


def from_json(s: str) -> Degradation:
    return from_dict(json.loads(s))


_TOKEN = re.compile(r"^([a-z_]+?)_?(\d+(?:\.\d+)?)?$")


def parse(spec: str | Degradation | Iterable, severity=None, rng=None) -> Degradation:
    """Build a spec from names like ``"rain+noise"`` or ``"noise25+jpeg10"`` (order kept).

    A trailing number sets the operator's primary parameter (noise: sigma, jpeg: quality, blur: sigma,
    motion_blur: length, defocus: radius, ...); the other parameters are sampled at ``severity``
    (default 0.5) from ``rng`` (default seed 0). Unknown names raise ``ValueError`` listing the valid ones.
    Specs and lists of specs or names pass through (lists are composed).
    """
    if isinstance(spec, Degradation):
        return spec
    rng = as_rng(rng)
    s = 0.5 if severity is None else check_severity(severity)
    if isinstance(spec, str):
        tokens = [t.strip() for t in spec.split("+")]
        if not spec.strip() or any(not t for t in tokens):
            raise ValueError(f"empty degradation name in {spec!r}; valid names: {', '.join(names())}")
    else:
        tokens = list(spec)
        if not tokens:
            raise ValueError("no degradation given")
    steps = []
    for tok in tokens:
        if isinstance(tok, Degradation):
            steps.append(tok)
            continue
        key = str(tok).strip().lower().replace("-", "_").replace(" ", "_")
        m = _TOKEN.match(key)
        base, value = (m.group(1), m.group(2)) if m else (key, None)
        cls = get(base if m else key)
        op = cls.from_severity(s, rng)
        if value is not None:
            if cls.primary is None:
                raise ValueError(f"{cls.name} takes no value in a name string (got {tok!r})")
            op = dataclasses.replace(op, **{cls.primary: float(value)})
        steps.append(op)
    return steps[0] if len(steps) == 1 else Compose(steps)
