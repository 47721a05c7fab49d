"""Checkpoint saving keeps the previous checkpoint until the new one is complete."""

import pytest
import torch
from accelerate import Accelerator

from defusion.training_utils import checkpoint_dirs, prune_checkpoints, save_checkpoint


def _accelerator():
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    acc.prepare(model, opt)
    return acc


def test_save_checkpoint_keeps_total_limit_newest(tmp_path):
    acc = _accelerator()
    for step in (10, 20, 30):
        save_checkpoint(acc, tmp_path, step, total_limit=2)
    assert [d.name for d in checkpoint_dirs(tmp_path)] == ["checkpoint-20", "checkpoint-30"]
    assert not list(tmp_path.glob(".checkpoint-*.tmp"))


def test_killed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    acc = _accelerator()
    save_checkpoint(acc, tmp_path, 10, total_limit=1)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(acc, "save_state", dies)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(acc, tmp_path, 20, total_limit=1)
    assert [d.name for d in checkpoint_dirs(tmp_path)] == ["checkpoint-10"]
    assert (tmp_path / "checkpoint-10" / "model.safetensors").is_file()


def test_prune_checkpoints_keeps_newest(tmp_path):
    for step in (5, 40, 300):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-final").mkdir()
    prune_checkpoints(tmp_path, 1)
    assert sorted(d.name for d in tmp_path.iterdir()) == ["checkpoint-300", "checkpoint-final"]
    prune_checkpoints(tmp_path, None)
    assert (tmp_path / "checkpoint-300").is_dir()
