"""Models: every saved component is a diffusers ``ModelMixin`` + ``ConfigMixin`` with named presets
(``Model.from_preset("tiny" | "small" | "paper")``)."""

from diffusers import ModelMixin  # noqa: F401  (the pipeline loader looks it up on this namespace)

from .adapter import DegradationAttnProcessor, VisualInstructionAdapter, cross_attention_layers
from .bridge import ImageRestorationBridge
from .clearair import ClearAIR
from .denoiser import DefusionDenoiser
from .dfpir import DFPIR
from .perceive_ir import PerceiveIR
from .promptir import PromptIR
from .restormer import Restormer
from .tokenizer import DegradationTokenizer, PatchGANDiscriminator
from .unet import DefusionUNet

__all__ = [
    "ClearAIR",
    "DFPIR",
    "DefusionDenoiser",
    "DefusionUNet",
    "DegradationAttnProcessor",
    "DegradationTokenizer",
    "ImageRestorationBridge",
    "PatchGANDiscriminator",
    "PerceiveIR",
    "PromptIR",
    "Restormer",
    "VisualInstructionAdapter",
    "cross_attention_layers",
]
