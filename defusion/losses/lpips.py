"""LPIPS from the ``lpips`` package, with the trunk (AlexNet / VGG16 / SqueezeNet) loaded offline.

The ``lpips`` package ships its learned linear heads but downloads the ImageNet trunk through torchvision.
Here the trunk is built without weights and then filled from a local file: ``trunk_weights`` (a torchvision
state dict such as ``alexnet-owt-7be5be79.pth``) or, if not given, the torch hub cache
(``$TORCH_HOME/hub/checkpoints``). Nothing is downloaded.

* metrics (``defusion.metrics``) need the real trunk: without it LPIPS is *unavailable*, never computed on a
  random trunk;
* training losses may opt in to a random trunk (``allow_random_trunk=True``) with one clear warning; the
  returned info says which trunk was used so the run can log it.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

# torchvision's file names for the ImageNet weights of each trunk
TRUNK_FILES = {
    "alex": ("alexnet", "alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16", "vgg16-397923af.pth"),
    "squeeze": ("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth"),
}


class LPIPSUnavailable(RuntimeError):
    """The real LPIPS trunk weights are not present locally."""


def find_trunk_weights(net: str = "alex", trunk_weights=None) -> Path | None:
    """The local trunk weights file: the given path, else the torch hub cache copy, else None."""
    if net not in TRUNK_FILES:
        raise ValueError(f"unknown LPIPS net {net!r}; choose from {sorted(TRUNK_FILES)}")
    if trunk_weights is not None:
        p = Path(trunk_weights)
        if p.is_dir():
            p = p / TRUNK_FILES[net][1]
        if not p.is_file():
            raise FileNotFoundError(f"LPIPS trunk weights not found at {p} (expected torchvision's {TRUNK_FILES[net][1]})")
        return p
    import torch

    hub = Path(os.environ.get("TORCH_HOME", Path(torch.hub.get_dir()).parent)) / "hub" / "checkpoints"
    for d in {hub, Path(torch.hub.get_dir()) / "checkpoints"}:
        if (d / TRUNK_FILES[net][1]).is_file():
            return d / TRUNK_FILES[net][1]
    return None


def build_lpips(net: str = "alex", trunk_weights=None, allow_random_trunk: bool = False):
    """Return ``(model, info)``: an eval-mode, frozen ``lpips.LPIPS`` and a dict describing its trunk.

    Raises ``LPIPSUnavailable`` when no trunk weights are found and ``allow_random_trunk`` is False.
    """
    import lpips
    import torch
    import torchvision

    path = find_trunk_weights(net, trunk_weights)
    if path is None and not allow_random_trunk:
        raise LPIPSUnavailable(
            f"LPIPS needs the ImageNet {TRUNK_FILES[net][0]} trunk ({TRUNK_FILES[net][1]}); put it in the torch hub "
            "cache or pass its path. Nothing is downloaded."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notice for pretrained=False
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        arch = getattr(torchvision.models, TRUNK_FILES[net][0])(weights=None)
        arch.load_state_dict(state)
        features = arch.features
        for name, sl in model.net.named_children():
            if not name.startswith("slice"):
                continue
            for idx, module in sl.named_children():
                module.load_state_dict(features[int(idx)].state_dict())
        info = {"lpips_net": net, "lpips_trunk": str(path)}
    else:
        warnings.warn(
            f"LPIPS trunk weights ({TRUNK_FILES[net][1]}) not found: using a RANDOM {TRUNK_FILES[net][0]} trunk. "
            "The perceptual loss is then only a random-feature loss; pass trunk weights for the real one.",
            stacklevel=2,
        )
        info = {"lpips_net": net, "lpips_trunk": "random (pnet_rand=True): weights not found locally"}
    model.eval().requires_grad_(False)
    return model, info
