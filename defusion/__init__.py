"""defusion: all-in-one image restoration on Hugging Face Diffusers.

The top level stays light: importing ``defusion`` loads numpy-side tools only (degradations, visual
instructions, image helpers); torch is imported where models need it.
"""

__version__ = "0.1.0"

from . import degradations
from .images import load_image, save_image, to_float_image
from .instructions import VisualInstruction

__all__ = ["VisualInstruction", "degradations", "load_image", "save_image", "to_float_image", "__version__"]
