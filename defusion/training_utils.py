"""Small helpers shared by the ``train/`` scripts (checkpoint bookkeeping, image grids, logging config)."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
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


def checkpoint_problem(folder) -> str | None:
    """Why a checkpoint folder cannot be resumed from (a missing, empty or truncated file, named), or None when it
    looks intact. Reads headers and archive checksums only; nothing is unpickled."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    files = [f for f in folder.rglob("*") if f.is_file()]
    if not files:
        return f"{folder} is empty"
    for f in files:
        if f.stat().st_size == 0:
            return f"{f} is empty"
        try:
            if f.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(f), "pt") as st:
                    for key in st.keys():
                        st.get_slice(key)  # every tensor's extent must lie inside the file
                if f.stat().st_size < _safetensors_end(f):
                    return f"{f} is truncated"
            elif f.suffix in (".bin", ".pt", ".pkl") and zipfile.is_zipfile(f):  # torch.save archives
                with zipfile.ZipFile(f) as z:
                    bad = z.testzip()
                if bad is not None:
                    return f"{f} is damaged ({bad})"
            elif f.suffix in (".bin", ".pt"):
                return f"{f} is truncated or not a torch archive"
            elif f.suffix == ".pkl" and not f.read_bytes().endswith(b"."):
                return f"{f} is truncated"  # a plain pickle ends with its STOP opcode
            elif f.suffix == ".json":
                json.loads(f.read_text())
        except Exception as e:  # a damaged file of any kind: say which
            return f"{f} is damaged ({type(e).__name__}: {e})"
    return None


def _safetensors_end(path: Path) -> int:
    """The file size a safetensors file's header promises (8 + header + the last tensor's end)."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    return 8 + n + max(ends, default=0)


def resolve_resume(output_dir, resume_from_checkpoint: str | None, warn=print) -> Path | None:
    """``"latest"`` -> the newest intact checkpoint (None if there is none; damaged ones are skipped with a
    warning); a name or path -> that folder, which must exist and be intact."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        for d in reversed(checkpoint_dirs(output_dir)):
            problem = checkpoint_problem(d)
            if problem is None:
                return d
            warn(f"warning: skipping damaged checkpoint {d.name}: {problem}")
        return None
    p = Path(resume_from_checkpoint)
    if not p.is_absolute() and not p.exists():
        p = Path(output_dir) / p
    if not p.is_dir():
        raise FileNotFoundError(f"checkpoint {resume_from_checkpoint} not found (looked at {p})")
    problem = checkpoint_problem(p)
    if problem is not None:
        raise ValueError(f"cannot resume from {p}: {problem}")
    return p


def save_checkpoint(accelerator, output_dir, step: int, total_limit: int | None) -> Path:
    """``accelerator.save_state`` into a temporary folder, renamed to ``checkpoint-{step}`` once complete; only then
    are the oldest checkpoints beyond ``total_limit`` deleted, so a run killed while saving keeps its previous one."""
    out = Path(output_dir)
    final, tmp = out / f"checkpoint-{step}", out / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        publish_checkpoint(tmp, final, total_limit)
    accelerator.wait_for_everyone()
    return final


def publish_checkpoint(tmp, final, total_limit: int | None) -> Path:
    """Rename a completely written checkpoint folder ``tmp`` to ``final``, then prune the oldest beyond the limit."""
    final = Path(final)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    prune_checkpoints(final.parent, total_limit)
    return final


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
    """Delete the oldest checkpoints so that at most ``keep`` remain; call it after the newest one is complete."""
    if not keep:
        return
    dirs = checkpoint_dirs(output_dir)
    for d in dirs[: max(0, len(dirs) - keep)]:
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

    def truncate_after(self, step: int) -> None:
        """Drop the written rows past ``step``: a run resumed from an older checkpoint (the newer one was damaged)
        redoes those steps."""
        if self.path.is_file():
            rows = [r for r in self.path.read_text().splitlines() if r.strip() and json.loads(r).get("step", 0) <= step]
            self.path.write_text("".join(r + "\n" for r in rows))

    def flush(self) -> None:
        """Append the rows added since the last flush (changes to rows already written are not seen)."""
        rows = self[self._written :]
        if rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
        self._written = len(self)


def validation_means(psnr_in: list[float], psnr_out: list[float], suffix: str = "") -> dict:
    """Mean input and restored PSNR over the held-out samples that their degradation changed (a sparse kind can
    leave a small crop as it was: its input PSNR is infinite and says nothing of restoring); ``val_unchanged``
    counts the others (the means are left out when no sample was changed). ``suffix`` ends each key."""
    keep = [i for i, v in enumerate(psnr_in) if np.isfinite(v)]
    res = {f"val_unchanged{suffix}": len(psnr_in) - len(keep)}
    if keep:
        res[f"val_psnr_input{suffix}"] = float(np.mean([psnr_in[i] for i in keep]))
        res[f"val_psnr{suffix}"] = float(np.mean([psnr_out[i] for i in keep]))
    return res
