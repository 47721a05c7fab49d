"""Visual instructions: a visual ground degraded like the input, next to its clean ("null") ground.

    >>> from defusion import VisualInstruction, degradations as D
    >>> inst = VisualInstruction.compose([D.Rain(density=0.8), D.GaussianNoise(sigma=25)], seed=3)
    >>> inst = VisualInstruction.from_names("rain+noise")         # names, parsed by the registry
    >>> inst.image, inst.null                                      # float32 HWC in [0, 1], 224 x 224
    >>> inst.save_grid("instruction.png")                         # null | instruction | difference

Everything is a pure function of (spec, seed, ground kind, size): the same arguments give the same pixels.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from visual_grounds import DEFAULT_SIZE, GroundPool, blank_ground, simple_ground

from . import degradations as D
from .degradations import Compose, Degradation
from .images import make_grid, save_png

GROUND_KINDS = ("pool", "blank", "simple")
MAX_INSTRUCTION_SIZE = 2048  # the tokenizer sees 224 px; larger grounds only cost memory


def _ground_image(kind, seed: int, size, pool: GroundPool | None) -> np.ndarray:
    if isinstance(kind, np.ndarray):
        from .images import check_image

        return check_image(kind, "ground", channels=(3,)).copy()
    if kind == "pool":
        pool = pool or GroundPool(size=size)
        return pool.sample(seed).image
    if kind == "blank":
        return blank_ground(size, seed=seed)
    if kind == "simple":
        return simple_ground(size, seed=seed)
    raise ValueError(f"ground must be one of {GROUND_KINDS} or a float32 HWC RGB array, got {kind!r}")


class VisualInstruction:
    """A degraded visual ground (``image``), its clean ground (``null``) and the spec that links them.

    Build with ``from_spec``, ``compose``, ``from_names`` or ``VisualInstruction.null_instruction``;
    combine with ``+`` (the same ground, degradations applied in order).
    """

    def __init__(self, spec: Degradation, null: np.ndarray, image: np.ndarray, seed: int = 0, ground="pool"):
        self.spec = spec
        self.null = null
        self.image = image
        self.seed = int(seed)
        self.ground = ground if isinstance(ground, str) else "array"

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_spec(
        cls,
        spec: Degradation | Iterable[Degradation] | None,
        seed: int = 0,
        size=DEFAULT_SIZE,
        ground="pool",
        pool: GroundPool | None = None,
        strength: str = "same",
    ) -> "VisualInstruction":
        """Degrade a ground with ``spec``.

        Args:
            spec: a degradation spec, a list of specs (composed in order), or None (no degradation).
            seed: picks the ground and the random parts of the degradation (streak positions, noise...).
            size: ground size (int or (h, w)); 224 is the tokenizer's input.
            ground: ``"pool"`` (TE42-like, default), ``"blank"`` or ``"simple"`` (the paper's ablations),
                or an RGB float array to use as the ground.
            pool: a ``GroundPool`` to draw from (e.g. one with natural photo crops).
            strength: ``"same"`` keeps the spec's parameters (the default: the instruction shows the same
                strength as the input); ``"random"`` re-samples each kind at a random severity, for training
                the model to read the kind of degradation rather than its exact strength.
        """
        sizes = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else tuple(size)
        if len(sizes) != 2 or not all(isinstance(v, (int, np.integer)) and 8 <= v <= MAX_INSTRUCTION_SIZE for v in sizes):
            raise ValueError(f"instruction size must be 8 to {MAX_INSTRUCTION_SIZE} px (one int or (h, w)), got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"the instruction seed must be a whole number >= 0, got {seed!r}")
        if spec is None:
            spec = Compose([])
        elif not isinstance(spec, Degradation):
            spec = Compose(list(spec))
        ground_rng, deg_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(2))
        if strength == "random":
            spec = Compose([type(s).sample(deg_rng, float(deg_rng.uniform(0.2, 1.0))) for s in spec.steps])
        elif strength != "same":
            raise ValueError(f"strength must be 'same' or 'random', got {strength!r}")
        null = _ground_image(ground, int(ground_rng.integers(2**31)), size, pool)
        image = spec.apply(null, deg_rng)
        return cls(spec, null, image, seed=seed, ground=ground)

    @classmethod
    def compose(cls, specs: Sequence[Degradation], **kwargs) -> "VisualInstruction":
        """An instruction for several degradations applied in the given order."""
        return cls.from_spec(Compose(specs), **kwargs)

    @classmethod
    def from_names(cls, names: str, severity=None, **kwargs) -> "VisualInstruction":
        """From a name string like ``"rain+noise"`` or ``"noise25+jpeg10"`` (severity default 0.5)."""
        seed = kwargs.get("seed", 0)
        return cls.from_spec(D.parse(names, severity=severity, rng=seed), **kwargs)

    @classmethod
    def null_instruction(cls, **kwargs) -> "VisualInstruction":
        """The clean ground as its own instruction (the paper's p = 0.1 replacement in training)."""
        return cls.from_spec(None, **kwargs)

    def __add__(self, other: "VisualInstruction") -> "VisualInstruction":
        if not isinstance(other, VisualInstruction):
            return NotImplemented
        return VisualInstruction.from_spec(
            Compose([self.spec, other.spec]), seed=self.seed, size=self.null.shape[:2],
            ground=self.null if self.ground == "array" else self.ground,
        )  # fmt: skip

    # ---- description --------------------------------------------------------------------------
    @property
    def names(self) -> str:
        return "+".join(s.name for s in self.spec.steps) or "none"

    @property
    def label(self) -> str:
        return self.spec.label if self.spec.steps else "none"

    def __repr__(self) -> str:
        h, w = self.null.shape[:2]
        return f"VisualInstruction({self.label}, seed={self.seed}, ground={self.ground!r}, size={h}x{w})"

    def to_dict(self) -> dict:
        """Everything needed to rebuild the instruction (except an array ground)."""
        return {"spec": self.spec.to_dict(), "seed": self.seed, "ground": self.ground, "size": list(self.null.shape[:2])}

    @classmethod
    def from_dict(cls, d: dict) -> "VisualInstruction":
        if d.get("ground") == "array":
            raise ValueError("an instruction built on an array ground cannot be rebuilt from its dict")
        return cls.from_spec(D.from_dict(d["spec"]), seed=d["seed"], size=tuple(d["size"]), ground=d["ground"])

    # ---- export -------------------------------------------------------------------------------
    def to_numpy(self) -> np.ndarray:
        """The instruction image, float32 HWC in [0, 1]."""
        return self.image.copy()

    def to_pil(self) -> Image.Image:
        return Image.fromarray((np.clip(self.image, 0, 1) * 255 + 0.5).astype(np.uint8))

    def to_tensor(self, include_null: bool = False):
        """Torch float32 (1, 3, H, W) in [-1, 1] (the models' convention); with ``include_null`` a (2, 3, H, W)
        batch [instruction, null] for the tokenizer's residual codes."""
        import torch

        arrays = [self.image, self.null] if include_null else [self.image]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return x * 2.0 - 1.0

    def grid(self, amplify: float = 4.0) -> np.ndarray:
        """null | instruction | |instruction - null| x ``amplify``, labelled."""
        diff = np.clip(np.abs(self.image - self.null) * amplify, 0, 1)
        return make_grid([self.null, self.image, diff], ["null ground", self.label, f"|difference| x{amplify:g}"])

    def save_grid(self, path, amplify: float = 4.0):
        """Write ``grid()`` as a PNG and return the path."""
        return save_png(self.grid(amplify), path)


def text_instruction(spec: Degradation | None) -> str:
    """The text form of an instruction, for the paper's text-instead-of-visual ablation:
    ``"remove rain, noise"``, or ``"keep the image unchanged"`` for no degradation."""
    steps = [] if spec is None else list(spec.steps)
    if not steps:
        return "keep the image unchanged"
    return "remove " + ", ".join(s.name.replace("_", " ") for s in steps)


def instruction_gallery(instructions: Sequence[VisualInstruction], cols: int = 4) -> np.ndarray:
    """Several instructions in one labelled grid (the clean ground first when they share it)."""
    if not instructions:
        raise ValueError("no instructions to show")
    images = [instructions[0].null] + [i.image for i in instructions]
    labels = ["null ground"] + [i.label for i in instructions]
    return make_grid(images, labels, cols=cols)
