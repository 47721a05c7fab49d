"""Named model sizes, reached the same way on every model class: ``Model.from_preset("tiny" | "small" | "paper")``.

``tiny`` runs in milliseconds (tests), ``small`` is what ships, ``paper`` the papers' sizes. A class lists its
sizes in ``PRESETS`` (name -> constructor arguments).
"""

from __future__ import annotations


class PresetMixin:
    PRESETS: dict[str, dict] = {}

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """An untrained model of a named size; keyword arguments override single constructor arguments."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown {cls.__name__} preset {name!r}; choose from {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})
