"""Models: every saved component is a diffusers ``ModelMixin`` + ``ConfigMixin`` with named presets."""

from .tokenizer import DegradationTokenizer, PatchGANDiscriminator

__all__ = ["DegradationTokenizer", "PatchGANDiscriminator"]
