"""Run a method over tasks and write per-image CSV, ``summary.json``, a markdown table and galleries."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm


from .. import __version__
from ..images import make_grid, save_png
from ..metrics import LPIPS, psnr, ssim
from .methods import load_method
from .tasks import Task, iter_samples, parse_tasks

CONVENTION = (
    "RGB (grey sets: one channel) in [0,1], centre-crop to a multiple of 16 before degradation, no border; "
    "PSNR and SSIM by scikit-image (SSIM 7x7 uniform window, data_range 1); synthetic inputs 8-bit, per-image "
    "seed crc32('SET/stem/degradation')"
)


def _run_method(method, lq: np.ndarray) -> np.ndarray:
    """Methods take and return RGB; grey images go in as three equal channels and come back averaged."""
    grey = lq.shape[-1] == 1
    x = np.repeat(lq, 3, -1) if grey else lq
    out = np.asarray(method(np.ascontiguousarray(x)), dtype=np.float32)
    if out.shape != x.shape:
        raise ValueError(f"method returned shape {out.shape} for input {x.shape}")
    out = np.clip(np.nan_to_num(out, nan=0.0), 0, 1)
    return out.mean(axis=-1, keepdims=True) if grey else out


def _mean(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def evaluate(
    method: str | object,
    tasks,
    data_root,
    out_dir=None,
    limit: int | None = None,
    lpips: bool = True,
    gallery: int = 3,
    method_name: str | None = None,
    progress: bool = True,
    on_image=None,
) -> dict:
    """Evaluate ``method`` (a registered name or a callable) on ``tasks`` (names, presets or ``Task``s).

    Returns the summary dict ``{task: {psnr, ssim, lpips, input_psnr, input_ssim, count, seconds_per_mp}}``
    and, with ``out_dir``, writes ``per_image.csv``, ``summary.json``, ``summary.md`` and
    ``gallery/<task>.png`` (the ``gallery`` images with the smallest and the largest PSNR gain over the input:
    input | output | target). ``limit``: the first N images of each set, or a dict ``{task name: N}``.
    ``on_image(task, sample, restored, row)`` is called after each image (to keep outputs for a figure).
    Tasks whose data is missing, or that the method cannot run (an instructed method on a set of unknown
    degradation), are skipped with a note in the summary; when every task is skipped, nothing is written.
    """
    name = method_name or (method if isinstance(method, str) else getattr(method, "__name__", type(method).__name__))
    fn = load_method(method) if isinstance(method, str) else method
    tasks = tasks if isinstance(tasks, list) and all(isinstance(t, Task) for t in tasks) else parse_tasks(tasks)
    lp = LPIPS() if lpips else None
    out = Path(out_dir) if out_dir else None
    rows, summary, skipped = [], {}, {}
    for task in tasks:
        n = limit.get(task.name) if isinstance(limit, dict) else limit
        try:
            task_fn = fn.for_task(task) if hasattr(fn, "for_task") else fn
        except ValueError as e:  # e.g. an instructed method on a set of unknown degradation
            skipped[task.name] = str(e)
            continue
        try:
            samples = list(iter_samples(task, data_root, n))
        except FileNotFoundError as e:  # data missing; broken data (lq and gt of other sizes) still raises
            skipped[task.name] = str(e)
            continue
        task_rows, shown = [], []
        for s in tqdm(samples, desc=f"{name} {task.name}", disable=not progress, unit="image"):
            t0 = time.perf_counter()
            restored = _run_method(task_fn, s.lq)
            seconds = time.perf_counter() - t0
            row = {
                "task": task.name,
                "image": s.stem,
                "psnr": psnr(restored, s.gt, crop_multiple=None),
                "ssim": ssim(restored, s.gt, crop_multiple=None),
                "lpips": lp(restored, s.gt, crop_multiple=None) if lp else None,
                "input_psnr": psnr(s.lq, s.gt, crop_multiple=None),
                "input_ssim": ssim(s.lq, s.gt, crop_multiple=None),
                "seconds": seconds,
                "megapixels": s.gt.shape[0] * s.gt.shape[1] / 1e6,
                "spec": json.dumps(s.spec, sort_keys=True) if s.spec else "",
            }
            task_rows.append(row)
            if on_image is not None:
                on_image(task, s, restored, row)
            shown.append((row["psnr"] - row["input_psnr"], row["psnr"], s.stem, s.lq, restored, s.gt))
        rows += task_rows
        summary[task.name] = {
            "psnr": _mean(r["psnr"] for r in task_rows),
            "ssim": _mean(r["ssim"] for r in task_rows),
            "lpips": _mean(r["lpips"] for r in task_rows),
            "input_psnr": _mean(r["input_psnr"] for r in task_rows),
            "input_ssim": _mean(r["input_ssim"] for r in task_rows),
            "count": len(task_rows),
            "seconds_per_mp": sum(r["seconds"] for r in task_rows) / max(1e-9, sum(r["megapixels"] for r in task_rows)),
        }
        if out and gallery and shown:
            _write_gallery(shown, gallery, out / "gallery" / f"{task.name.replace(':', '_').replace('+', '-')}.png")
    result = {
        "method": name,
        "version": __version__,
        "convention": CONVENTION,
        "lpips": ("available: " + str(lp.info)) if lp and lp.available else f"unavailable: {lp.reason if lp else 'disabled'}",
        "tasks": summary,
        "skipped": skipped,
    }
    if out and summary:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "per_image.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["task"])
            w.writeheader()
            w.writerows(rows)
        (out / "summary.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        (out / "summary.md").write_text(markdown_table({name: result}))
    return result


def gallery_picks(gains, k: int) -> list[int]:
    """Indices of the ``k`` smallest and then the ``k`` largest ``gains`` (each once), smallest first."""
    order = sorted(range(len(gains)), key=lambda i: gains[i])
    return order[:k] + [i for i in order[-k:] if i not in order[:k]]


def _write_gallery(shown, k: int, path: Path) -> None:
    images, labels = [], []
    for i in gallery_picks([x[0] for x in shown], k):
        gain, score, stem, lq, restored, gt = shown[i]
        images += [lq, restored, gt]
        labels += [f"{stem} input", f"output {score:.2f} dB ({gain:+.2f})", "target"]
    save_png(make_grid(images, labels, cols=3, tile_height=192), path)


def _fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_table(results: dict[str, dict]) -> str:
    """One table, a row per (task, method): PSNR / SSIM / LPIPS and seconds per megapixel."""
    lines = [
        "| task | method | n | PSNR | SSIM | LPIPS | input PSNR | s/MP |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    task_names = []
    for res in results.values():
        task_names += [t for t in res["tasks"] if t not in task_names]
    for t in task_names:
        for m, res in results.items():
            r = res["tasks"].get(t)
            if r is None:
                continue
            lines.append(
                f"| {t} | {m} | {r['count']} | {_fmt(r['psnr'], 2)} | {_fmt(r['ssim'], 4)} | {_fmt(r['lpips'], 4)} | "
                f"{_fmt(r['input_psnr'], 2)} | {_fmt(r['seconds_per_mp'], 2)} |"
            )
    notes = {s for res in results.values() for s in res.get("skipped", {})}
    if notes:
        lines.append("")
        lines.append("Skipped (data not found): " + ", ".join(sorted(notes)))
    first = next(iter(results.values()))
    lines.append("")
    lines.append(f"Convention: {first['convention']}. LPIPS {first['lpips'].split(':')[0]}.")
    return "\n".join(lines) + "\n"
