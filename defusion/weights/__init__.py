"""Weights shipped inside the package, resolved by name in ``from_pretrained`` (offline, no download).

    DefusionPipeline.from_pretrained("defusion-small")
    RestorerPipeline.from_pretrained("dfpir-small")       # the DFPIR comparison model

``DEFAULT_MODEL`` names the shipped default (what ``restore``, ``serve`` and ``eval --method default`` use);
``"default"`` resolves to it wherever a shipped name is accepted.

``resolve(name_or_path)`` returns the folder of a shipped model when given its name, the argument unchanged when
it is an existing path or does not look like one of our names (a hub id, say), and raises a clear error for a
``defusion-*`` or ``dfpir-*`` name that this install does not ship. Each shipped folder has a model card (``README.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent
PREFIXES = ("defusion-", "dfpir-")
DEFAULT_MODEL = "defusion-small"


def available() -> list[str]:
    """Names of the shipped pipeline folders."""
    return sorted(p.name for p in WEIGHTS.iterdir() if (p / "model_index.json").is_file())


def resolve(name_or_path) -> str | os.PathLike:
    if isinstance(name_or_path, os.PathLike) or Path(str(name_or_path)).exists():
        return name_or_path
    name = str(name_or_path)
    if name == "default":
        name = DEFAULT_MODEL
    if name in available():
        return str(WEIGHTS / name)
    if name.startswith(PREFIXES) and "/" not in name:
        raise FileNotFoundError(f"{name!r} is not shipped with this install of defusion; shipped: {available()} "
                                "(or pass a local pipeline folder)")  # fmt: skip
    return name_or_path
