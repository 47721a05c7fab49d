"""Datasets: on-the-fly visual instructions (tokenizer) and restoration data with per-sample specs."""

from .device_batches import DeviceBatches, ResidentImages
from .instruction_bank import InstructionBank
from .instructions import InstructionDataset, multi_hot
from .restoration import (
    PAIR_LAYOUTS,
    MixtureDataset,
    PairedFolderDataset,
    SyntheticDegradationDataset,
    crop_pair,
    dihedral,
    list_images,
    paired_layout,
)

__all__ = [
    "PAIR_LAYOUTS",
    "DeviceBatches",
    "InstructionBank",
    "InstructionDataset",
    "MixtureDataset",
    "PairedFolderDataset",
    "ResidentImages",
    "SyntheticDegradationDataset",
    "crop_pair",
    "dihedral",
    "list_images",
    "multi_hot",
    "paired_layout",
]
