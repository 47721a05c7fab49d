"""Perception modules; each has real loading code (a local folder or file) and an offline fallback.

* ``DegradationIdentifier``: which degradations, how strong (the task identifier; ``"auto"`` modes).
* ``DegradationPromptEncoder``: degradation prompt texts -> CLIP text codes (DFPIR).
* ``QualityPerceiver``: Perceive-IR's learned terrible / mediocre / excellent prompts on a frozen CLIP.
* ``SemanticEncoder``: DINOv2 CLS features of layers 1 / 4 / 8 / 12 (Perceive-IR).
* ``CompactFeatureExtractor``: Perceive-IR's degradation code (its InfoNCE loss is in ``defusion.losses``).
* ``IQAEmbedding``: a quality embedding per image (ClearAIR), pluggable backend.
* ``RegionMasks``: up to 16 region masks per image, SAM or SLIC (ClearAIR).
* ``Conditioner``: computes what a restorer's ``conditions`` ask for from these modules.
"""

from diffusers import ModelMixin  # noqa: F401  (the pipeline loader looks it up on this namespace)

from .cfe import CompactFeatureExtractor
from .clip import load_clip
from .conditions import Conditioner
from .identifier import DegradationIdentifier, identifier_loss
from .iqa import IQAEmbedding
from .prompts import CLEAN_PROMPT, PROMPTS, DegradationPromptEncoder, prompt_for
from .quality import QUALITY_CLASSES, QualityPerceiver, quality_loss
from .regions import RegionMasks, slic_regions
from .semantic import SemanticEncoder

__all__ = [
    "CLEAN_PROMPT",
    "PROMPTS",
    "QUALITY_CLASSES",
    "CompactFeatureExtractor",
    "Conditioner",
    "DegradationIdentifier",
    "DegradationPromptEncoder",
    "IQAEmbedding",
    "QualityPerceiver",
    "RegionMasks",
    "SemanticEncoder",
    "identifier_loss",
    "load_clip",
    "prompt_for",
    "quality_loss",
    "slic_regions",
]
