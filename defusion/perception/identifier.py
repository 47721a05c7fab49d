"""DegradationIdentifier: which degradations does an image show, and how strongly?

A small CNN (multi-label presence logits + a severity in [0, 1] per kind) trained on clean images degraded by
the registry (``train/train_identifier.py``). It looks at native-resolution crops, since resizing would erase
noise and JPEG blocks; ``identify`` averages over a few crops. ``DefusionPipeline(instruction="auto")`` uses it
to build the visual instruction from what it detects.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .. import degradations as D
from ..models.compact import CompactWeightsMixin
from ..models.presets import PresetMixin


class DegradationIdentifier(CompactWeightsMixin, ModelMixin, ConfigMixin, PresetMixin):
    """Args:
    kinds: the registry names it reports (default: all).
    channels: widths of the stride-2 stages.
    crop: the crop size it is trained and run on.
    threshold: presence probability at or above which a kind is reported.
    kind_thresholds: per-kind overrides of ``threshold`` ({kind: probability}), e.g. a higher one for a kind whose
        false alarm costs a restoration more than a miss (``benchmarks/identifier_costs.py`` measures both).
    thresholds_given: thresholds that apply while another kind is reported ({kind: {other kind: probability}}),
        e.g. ``{"noise": {"haze": 0.55}}``: with noise found, haze needs 0.55. They can only raise a threshold.
    scene_kinds: kinds also judged on the whole image shrunk to one crop (a scene view). A scene-wide degradation
        such as haze shows at full strength only where the scene is deep; native crops of the sky or the ground
        miss it and outvote the one that sees it. For these kinds the scene view counts instead of the crops' mean
        where it is more confident and at least one crop reaches the kind's threshold on its own
        (``benchmarks/identifier_scene.py`` chooses the kinds on held-out training images).
    """

    PRESETS = {"tiny": dict(channels=(8, 16), crop=32), "small": {}, "paper": dict(channels=(64, 128, 256, 384))}

    @register_to_config
    def __init__(self, kinds=None, channels=(32, 64, 128, 192), crop: int = 128, threshold: float = 0.5,
                 kind_thresholds: dict | None = None, thresholds_given: dict | None = None,
                 scene_kinds: list | None = None):  # fmt: skip
        super().__init__()
        kinds = list(kinds or D.names())
        given = thresholds_given or {}
        named = set(kind_thresholds or {}) | set(given) | {k for v in given.values() for k in v} | set(scene_kinds or ())
        if sorted(named - set(kinds)):
            raise ValueError(f"thresholds name kinds the identifier does not report: {sorted(named - set(kinds))}; "
                             f"it reports {kinds}")  # fmt: skip
        values = [threshold, *(kind_thresholds or {}).values(), *(t for v in given.values() for t in v.values())]
        if not all(0.0 <= float(v) <= 1.0 for v in values):
            raise ValueError(f"thresholds are probabilities in [0, 1], got {values}")
        layers, c_in = [nn.Conv2d(3, channels[0], 3, padding=1), nn.SiLU()], channels[0]
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(8, c), nn.SiLU()]  # fmt: skip
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c_in, 2 * len(kinds))

    @property
    def kinds(self) -> list[str]:
        return list(self.config.kinds or D.names())

    def threshold_of(self, kind: str) -> float:
        """The presence probability at or above which ``kind`` is reported."""
        return float((self.config.kind_thresholds or {}).get(kind, self.config.threshold))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 2 * channels[-1]) mean- and max-pooled features (its embedding)."""
        h = self.features(x)
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [-1, 1] -> (presence logits (B, K), severity (B, K) in [0, 1])."""
        logits, sev = self.head(self.pooled(x)).chunk(2, dim=1)
        return logits, torch.sigmoid(sev)

    @torch.no_grad()
    def probabilities(self, image: np.ndarray, max_crops: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """Float HWC RGB in [0, 1] -> (presence probability, severity), one value per kind: the mean over up to
        ``max_crops`` native-resolution crops (centre, then corners), or for ``scene_kinds`` the scene view where
        it is the more confident and a crop agrees."""
        import cv2

        from ..images import check_image

        img = check_image(image, channels=(3,))
        c = self.config.crop
        scene = cv2.resize(img, (c, c), interpolation=cv2.INTER_AREA) if self.config.scene_kinds else None
        h, w = img.shape[:2]
        if h < c or w < c:
            img = np.pad(img, ((0, max(0, c - h)), (0, max(0, c - w)), (0, 0)), mode="reflect" if h > 1 and w > 1 else "edge")
            h, w = img.shape[:2]
        spots = [((h - c) // 2, (w - c) // 2), (0, 0), (0, w - c), (h - c, 0), (h - c, w - c)][:max_crops]
        views = [img[t : t + c, l : l + c] for t, l in spots] + ([scene] if scene is not None else [])
        x = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).to(self.device, self.dtype) * 2 - 1
        logits, sev = self(x)
        probs, sev = torch.sigmoid(logits).float().cpu(), sev.float().cpu()
        n = len(spots)
        p, s = probs[:n].mean(0), sev[:n].mean(0)
        if scene is not None:
            idx = torch.tensor([self.kinds.index(k) for k in self.config.scene_kinds])
            thr = torch.tensor([self.threshold_of(k) for k in self.config.scene_kinds])
            better = idx[(probs[n, idx] > p[idx]) & (probs[:n, idx].amax(0) >= thr)]
            p[better], s[better] = probs[n, better], sev[n, better]
        return p, s

    def identify(self, image: np.ndarray, max_crops: int = 5) -> list[tuple[str, float, float]]:
        """Float HWC RGB in [0, 1] -> [(kind, probability, severity)] for kinds above the threshold, most likely
        first (an empty list: the image looks clean)."""
        return self.decide(*self.probabilities(image, max_crops))

    def decide(self, p: torch.Tensor, s: torch.Tensor) -> list[tuple[str, float, float]]:
        """The kinds ``identify`` reports for presence probabilities ``p`` and severities ``s`` (one per kind):
        each at or above its threshold, then the ``thresholds_given`` of the kinds reported."""
        found = [(k, float(p[i]), float(s[i])) for i, k in enumerate(self.kinds) if p[i] >= self.threshold_of(k)]
        reported = {k for k, _, _ in found}
        for cond, raised in (self.config.thresholds_given or {}).items():
            if cond in reported:
                found = [f for f in found if f[1] >= raised.get(f[0], 0.0)]
        return sorted(found, key=lambda t: -t[1])


def identifier_loss(logits, severity, presence, target_severity):
    """BCE on presence + MSE on the severity of the kinds that are present."""
    bce = F.binary_cross_entropy_with_logits(logits, presence)
    mask = presence > 0
    mse = F.mse_loss(severity[mask], target_severity[mask]) if mask.any() else severity.sum() * 0
    return bce + mse, {"bce": bce.detach(), "severity_mse": mse.detach()}
