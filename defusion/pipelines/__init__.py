"""Pipelines: orchestration only (the models hold the logic)."""

from .defusion_pipeline import DefusionPipeline, DefusionPipelineOutput

__all__ = ["DefusionPipeline", "DefusionPipelineOutput"]
