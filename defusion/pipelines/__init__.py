"""Pipelines: orchestration only (the models hold the logic)."""

from .defusion_pipeline import DefusionPipeline, DefusionPipelineOutput
from .loading import read_class_name, register_with_diffusers
from .restorer_pipeline import RESTORERS, RestorerPipeline, RestorerPipelineOutput

PIPELINES = {"DefusionPipeline": DefusionPipeline, "RestorerPipeline": RestorerPipeline}
register_with_diffusers(*PIPELINES.values())  # diffusers.DiffusionPipeline.from_pretrained(folder) finds them


def pipeline_class(folder) -> type:
    """The pipeline class a saved folder holds, read from its ``model_index.json``."""
    name = read_class_name(folder)
    if name is None:
        raise FileNotFoundError(f"{folder} is not a pipeline folder (no model_index.json)")
    if name not in PIPELINES:
        raise ValueError(f"{folder} holds a {name}; defusion loads {sorted(PIPELINES)}")
    return PIPELINES[name]


__all__ = ["PIPELINES", "RESTORERS", "DefusionPipeline", "DefusionPipelineOutput", "RestorerPipeline",
           "RestorerPipelineOutput", "pipeline_class"]  # fmt: skip
