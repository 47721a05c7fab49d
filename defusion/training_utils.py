"""Small helpers shared by the ``train/`` scripts (checkpoint bookkeeping, image grids, logging config)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch


def checkpoint_dirs(output_dir) -> list[Path]:
    """``checkpoint-N`` folders under ``output_dir``, oldest first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [d for d in out.iterdir() if d.is_dir() and d.name.startswith("checkpoint-") and d.name[11:].isdigit()]
    return sorted(found, key=lambda d: int(d.name[11:]))


def resolve_resume(output_dir, resume_from_checkpoint: str | None) -> Path | None:
    """``"latest"`` -> newest checkpoint (None if there is none); a name or path -> that folder (must exist)."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        dirs = checkpoint_dirs(output_dir)
        return dirs[-1] if dirs else None
    p = Path(resume_from_checkpoint)
    if not p.is_absolute() and not p.exists():
        p = Path(output_dir) / p
    if not p.is_dir():
        raise FileNotFoundError(f"checkpoint {resume_from_checkpoint} not found (looked at {p})")
    return p


def step_of(checkpoint: Path) -> int:
    return int(Path(checkpoint).name.split("-")[-1])


def require_batches(dataset, batch_size: int, num_processes: int = 1) -> None:
    """Fail before training when ``drop_last`` would leave an epoch without a single batch (the step loop would
    otherwise spin forever without taking a step)."""
    need = batch_size * num_processes
    if len(dataset) < need:
        raise ValueError(
            f"the training set has {len(dataset)} samples, fewer than one batch ({batch_size} per process x "
            f"{num_processes} process(es)); add images, raise the repeats or lower --train_batch_size"
        )


def prune_checkpoints(output_dir, keep: int | None) -> None:
    """Delete the oldest checkpoints so that at most ``keep - 1`` remain before a new one is written."""
    if not keep:
        return
    dirs = checkpoint_dirs(output_dir)
    for d in dirs[: max(0, len(dirs) - keep + 1)]:
        shutil.rmtree(d)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> float HWC in [0, 1]."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def loggable_config(args) -> dict:
    """argparse namespace -> dict of scalars for trackers (tensorboard refuses lists and None)."""
    out = {}
    for k, v in vars(args).items():
        if isinstance(v, (int, float, str, bool)):
            out[k] = v
        elif v is not None:
            out[k] = str(v)
    return out


def env_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", -1))


def save_ema(ema, folder) -> None:
    """Write a diffusers ``EMAModel`` as safetensors (shadow weights) + JSON (its counters); no pickles."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    save_file({f"shadow.{i}": p.detach().contiguous().cpu() for i, p in enumerate(shadow)}, str(folder / "ema.safetensors"))
    (folder / "ema.json").write_text(json.dumps({k: v for k, v in state.items() if isinstance(v, (int, float, bool))}))


def load_ema(ema, folder) -> None:
    from safetensors.torch import load_file

    folder = Path(folder)
    tensors = load_file(str(folder / "ema.safetensors"))
    state = json.loads((folder / "ema.json").read_text())
    state["shadow_params"] = [tensors[f"shadow.{i}"] for i in range(len(tensors))]
    ema.load_state_dict(state)


class TrainHistory(list):
    """The per-step rows of a training run (a list of dicts), appended to ``path`` (JSON lines) by ``flush``.

    The train scripts flush at every checkpoint, so a run that is killed keeps its rows up to its last checkpoint;
    resumed from that checkpoint, it redoes the later steps and appends them, so no step is written twice.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        self._written = 0

    def flush(self) -> None:
        """Append the rows added since the last flush (changes to rows already written are not seen)."""
        rows = self[self._written :]
        if rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
        self._written = len(self)
