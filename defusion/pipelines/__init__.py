"""Pipelines: orchestration only (the models hold the logic)."""

from .defusion_pipeline import DefusionPipeline, DefusionPipelineOutput
from .restorer_pipeline import RESTORERS, RestorerPipeline, RestorerPipelineOutput

__all__ = ["RESTORERS", "DefusionPipeline", "DefusionPipelineOutput", "RestorerPipeline", "RestorerPipelineOutput"]
