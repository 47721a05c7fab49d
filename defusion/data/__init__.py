"""Datasets: on-the-fly visual instructions (tokenizer); restoration datasets join with the restorers."""

from .instructions import InstructionDataset, multi_hot

__all__ = ["InstructionDataset", "multi_hot"]
