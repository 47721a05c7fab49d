"""Results files with one row per trained model at a fixed budget (``table5.py``'s variants, ``restorers_ranking.py``'s
restorers): ``{key: [row, ...]}``, each row with ``name``, ``train_samples``, ``input_psnr`` and ``psnr`` (and
``psnr_<N>steps`` for other sampler settings). Rows are merged one at a time under a lock, so models trained in
separate processes or sessions land in one file, and the file prints as a markdown table."""

from __future__ import annotations

import contextlib
import json
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# fields that describe a model's training run; an evaluation-only rerun keeps them from the row it replaces
TRAINING_FIELDS = ("train_minutes_cpu", "cpu_threads", "cpu", "train_minutes_gpu", "gpu", "resumed_from_step",
                   "earlier_calls")  # fmt: skip


def shown(arg: str) -> str:
    """A command argument as the results file shows it: paths inside the repository or beside it, relative to it."""
    if arg.startswith(str(ROOT.parent) + "/"):
        return os.path.relpath(arg, ROOT)
    return arg


def cpu_name() -> str:
    """The processor's model name as the system reports it (training minutes only compare on the same one)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def last_step(history: Path) -> int:
    """The last step a training history (JSON lines with ``step``) recorded; 0 when there is none yet."""
    history = Path(history)
    if not history.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in history.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def training_fields(minutes: float, resumed_from_step: int = 0, device: str = "cpu") -> dict:
    """What a row records about the training call this process made: its minutes and processor (``device`` "cuda":
    the GPU's name, else the CPU's and its threads), and the step it resumed from when an earlier call (another
    session, perhaps) had trained part of the run; the minutes are then this call's share only."""
    import torch

    if device == "cuda":
        fields = {"train_minutes_gpu": round(minutes, 1), "gpu": torch.cuda.get_device_name(), "cpu": cpu_name()}
    else:
        fields = {"train_minutes_cpu": round(minutes, 1), "cpu_threads": torch.get_num_threads(), "cpu": cpu_name()}
    if resumed_from_step:
        fields["resumed_from_step"] = int(resumed_from_step)
    return fields


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on the file ``path`` (created empty if missing; POSIX, elsewhere no lock), so runs side
    by side in separate processes do not overwrite each other's rows."""
    try:
        import fcntl
    except ImportError:  # Windows: run one model at a time
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_row(results: Path, row: dict, key: str, order: list[str], keep: tuple[str, ...] = ()) -> None:
    """Replace (or add) the row of ``row["name"]`` in ``results[key]``, rows sorted by ``order`` (others last);
    ``keep``: fields of the replaced row that ``row`` does not have and that stay true (how long its training took,
    when only its evaluation is rerun)."""
    results = Path(results)
    with locked(results):
        text = results.read_text() if results.is_file() else ""
        data = json.loads(text) if text.strip() else {key: []}
        rows = data.setdefault(key, [])
        old = next((r for r in rows if r["name"] == row["name"]), {})
        row = {**{k: old[k] for k in keep if k in old and k not in row}, **row}
        rows = [r for r in rows if r["name"] != row["name"]] + [row]
        data[key] = sorted(rows, key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
        results.write_text(json.dumps(data, indent=1) + "\n")


def markdown(results: Path, key: str) -> str:
    """The rows as a markdown table: an input row, then one row per model and sampler setting."""
    rows = json.loads(Path(results).read_text())[key]
    tasks = list(dict.fromkeys(t for r in rows for t in r["psnr"]))
    lines = [f"| {key[:-1]} | train samples | " + " | ".join(tasks) + " |", "|---|---:|" + "---:|" * len(tasks)]
    inp = {t: v for r in rows for t, v in r["input_psnr"].items()}
    lines.append("| input | | " + " | ".join(f"{inp[t]:.2f}" if t in inp else "" for t in tasks) + " |")
    for r in rows:
        for k in [k for k in r if k.startswith("psnr")]:
            label = r["name"] + ("" if k == "psnr" else f" ({k.split('_')[1].replace('steps', ' steps')})")
            vals = " | ".join(f"{r[k][t]:.2f}" if t in r[k] else "" for t in tasks)
            lines.append(f"| {label} | {r['train_samples']:,} | {vals} |")
    return "\n".join(lines)
