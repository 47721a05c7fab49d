"""Perception modules; each has real loading code (``from_pretrained`` on a local folder) and works offline."""

from diffusers import ModelMixin  # noqa: F401  (the pipeline loader looks it up on this namespace)

from .identifier import DegradationIdentifier, identifier_loss
from .prompts import CLEAN_PROMPT, PROMPTS, DegradationPromptEncoder, prompt_for

__all__ = ["CLEAN_PROMPT", "PROMPTS", "DegradationIdentifier", "DegradationPromptEncoder", "identifier_loss", "prompt_for"]
