"""defusion: all-in-one image restoration on Hugging Face Diffusers.

Importing ``defusion`` is light (degradations, visual instructions, image helpers); the torch-side names
(``DefusionPipeline`` and the models) are imported on first use.
"""

import importlib

__version__ = "0.1.0"

from . import degradations
from .images import load_image, save_image, to_float_image
from .instructions import VisualInstruction

_LAZY = {
    "DefusionPipeline": "defusion.pipelines",
    "DefusionPipelineOutput": "defusion.pipelines",
    "RestorerPipeline": "defusion.pipelines",
    "DefusionUNet": "defusion.models",
    "DegradationTokenizer": "defusion.models",
    "ImageRestorationBridge": "defusion.models",
    "VisualInstructionAdapter": "defusion.models",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'defusion' has no attribute {name!r}")


__all__ = ["VisualInstruction", "degradations", "load_image", "save_image", "to_float_image", "__version__", *_LAZY]
