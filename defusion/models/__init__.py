"""Models: every saved component is a diffusers ``ModelMixin`` + ``ConfigMixin`` with named presets
(``Model.from_preset("tiny" | "small" | "paper")``)."""

from diffusers import ModelMixin  # noqa: F401  (the pipeline loader looks it up on this namespace)

from .adapter import DegradationAttnProcessor, VisualInstructionAdapter, cross_attention_layers
from .bridge import ImageRestorationBridge
from .dfpir import DFPIR
from .promptir import PromptIR
from .restormer import Restormer
from .tokenizer import DegradationTokenizer, PatchGANDiscriminator
from .unet import DefusionUNet

__all__ = [
    "DFPIR",
    "DefusionUNet",
    "DegradationAttnProcessor",
    "DegradationTokenizer",
    "ImageRestorationBridge",
    "PatchGANDiscriminator",
    "PromptIR",
    "Restormer",
    "VisualInstructionAdapter",
    "cross_attention_layers",
]
