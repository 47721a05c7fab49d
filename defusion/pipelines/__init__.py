"""Pipelines: orchestration only (the models hold the logic)."""

import json
from pathlib import Path

from .defusion_pipeline import DefusionPipeline, DefusionPipelineOutput
from .restorer_pipeline import RESTORERS, RestorerPipeline, RestorerPipelineOutput

PIPELINES = {"DefusionPipeline": DefusionPipeline, "RestorerPipeline": RestorerPipeline}


def pipeline_class(folder) -> type:
    """The pipeline class a saved folder holds, read from its ``model_index.json``."""
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{folder} is not a pipeline folder (no model_index.json)")
    name = json.loads(index.read_text()).get("_class_name")
    if name not in PIPELINES:
        raise ValueError(f"{folder} holds a {name}; defusion loads {sorted(PIPELINES)}")
    return PIPELINES[name]


__all__ = ["PIPELINES", "RESTORERS", "DefusionPipeline", "DefusionPipelineOutput", "RestorerPipeline",
           "RestorerPipelineOutput", "pipeline_class"]  # fmt: skip
