"""The five regression restorers trained on the same data for the same number of samples, ranked with the harness on
the real all-in-one test sets (``aio3``: CBSD68 noise 15 / 25 / 50, Rain100L, SOTS outdoor).

    python benchmarks/restorers_ranking.py --models restormer,promptir [--preset small] [--samples 200000] \\
        [--out runs/ranking] [--data-root ../shared/data] [--results benchmarks/results/restorers_ranking.json]
    python benchmarks/restorers_ranking.py --table

Each model: ``train/train_restorer.py`` from scratch, its ``--preset``, on BSD400 (its last 8 images held out)
degraded on the fly with noise / rain / haze at repeat factors 3 / 1 / 1 (PromptIR's balancing), 64 px crops, batch
16, ``--samples`` samples, bf16, EMA 0.999, seed 0, each paper's optimiser and learning rate (``OPTIMISERS`` in
``train_restorer.py``) and its losses where they can be had offline:

* Restormer, PromptIR: L1.
* DFPIR: L1, with degradation prompts from ``DegradationPromptEncoder``'s offline fallback (a fixed random code per
  prompt text; no CLIP weights offline).
* Perceive-IR: L1 + InfoNCE on its CFE code, DINOv2 features from the tiny random fallback; its CLIP-aware and
  perceptual losses need CLIP and VGG16 weights that cannot be had offline and are off (logged by the trainer).
* ClearAIR: L1 + ICRM, quality / degradation conditions from the shipped ``defusion-small`` identifier, regions from
  SLIC (SAM cannot be had offline), DINOv2 from the tiny random fallback.

Evaluation: the harness (``defusion.eval.evaluate``), fp32, seed 0, told each task's degradation (DFPIR's prompt;
the others do not take one), whole images (tiles of 512). A model's row (its exact training command included)
replaces the row of the same name in ``--results``, under a lock, so models can be trained side by side or in
separate sessions. A model whose run folder holds a trained pipeline is only evaluated; an interrupted run resumes
from its last checkpoint (every 500 steps), and its row then records that step (``resumed_from_step``) beside the
minutes of the call that finished it.

On a lent GPU (train/configs/README.md has the exact call): ``--device cuda --clean-dir data_pack/BSD400 --no-eval
--max-minutes M --pack-to "$OUT"`` trains there and cuts the run folder into pieces that come back (the pipeline, or
the checkpoint when the deadline came first); here, ``train/device_campaign.py restore --name MODEL`` puts the folder
back under ``--out`` and this script without ``--no-eval`` resumes or evaluates it. The row records the GPU and its
minutes (``train_minutes_gpu``) from the run folder's ``training.json``, and each call that stopped at its
``--max-minutes`` before (``earlier_calls``: processor, minutes, the step it reached).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import budget_rows  # noqa: E402
from budget_rows import shown  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["restormer", "promptir", "dfpir", "perceive_ir", "clearair"]
IDENTIFIER = ROOT / "defusion" / "weights" / "defusion-small" / "identifier"
BATCH, CROP = 16, 64
PERCEPTION = {  # what each model's perception rests on here, as the row records it
    "restormer": "none",
    "promptir": "learned prompts (no external model)",
    "dfpir": "degradation prompts: offline fallback codes (no CLIP weights)",
    "perceive_ir": "DINOv2: tiny random fallback; CLIP-aware and perceptual losses off (no CLIP / VGG16 weights)",
    "clearair": "identifier: shipped defusion-small; regions: SLIC (no SAM); DINOv2: tiny random fallback",
}


def train_command(model: str, data_root: Path, out: Path, samples: int, preset: str, device: str = "cpu",
                  workers: int = 0, clean_dir: Path | None = None, max_minutes: float | None = None) -> list[str]:
    """The training run of one restorer (the same for every model but its own perception parts; ``device``,
    ``workers``, ``clean_dir`` (a byte-identical copy of BSD400's images) and ``max_minutes`` only change where and
    how long it runs)."""
    if model not in MODELS:
        raise ValueError(f"unknown restorer {model!r}; choose from {', '.join(MODELS)}")
    if samples % BATCH or samples <= 0:
        raise ValueError(f"--samples must be a positive multiple of the batch size {BATCH}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
    extra = ["--identifier", str(IDENTIFIER), "--region_cache", str(out / "regions")] if model == "clearair" else []
    if workers:
        extra += ["--dataloader_num_workers", str(workers)]
    if max_minutes:
        extra += ["--max_train_minutes", f"{max_minutes:g}"]
    clean = Path(clean_dir) if clean_dir else data_root / "BSD400" / "gt"
    return [sys.executable, str(ROOT / "train" / "train_restorer.py"), "--model", model, "--preset", preset,
            "--clean_dirs", str(clean), "--kinds", "noise,rain,haze", "--kind_repeats", "3,1,1",
            "--resolution", str(CROP), "--train_batch_size", str(BATCH), "--max_train_steps", str(samples // BATCH),
            "--mixed_precision", "bf16", "--use_ema", "--checkpointing_steps", "500", "--checkpoints_total_limit", "1",
            "--resume_from_checkpoint", "latest", "--seed", "0", *(["--cpu"] if device == "cpu" else []),
            "--output_dir", str(out), *extra]  # fmt: skip


def evaluate_model(pipeline: Path, data_root: Path, out: Path, tasks: str, limit: int | None = None) -> dict:
    """PSNR per task (and the input's) of a trained restorer, with the harness."""
    from defusion.eval import evaluate
    from defusion.eval.methods import PipelineMethod

    method = PipelineMethod(pipeline, instruction="task")
    summary = evaluate(method, tasks, data_root, out_dir=out / "eval", lpips=False, limit=limit, gallery=2,
                       method_name=pipeline.parent.name, progress=False)  # fmt: skip
    return {"psnr": {t: round(v["psnr"], 2) for t, v in summary["tasks"].items()},
            "input_psnr": {t: round(v["input_psnr"], 2) for t, v in summary["tasks"].items()},
            "num_parameters": method.num_parameters, "skipped_tasks": summary.get("skipped", {})}  # fmt: skip


def pack_run(pack_to: str | None, out: Path, name: str, finished: bool) -> None:
    """Cut a run folder into pieces that come back from a device call: the trained pipeline, its history and
    training record, or, when training stopped short, the checkpoint to resume from (SLIC caches never)."""
    if not pack_to:
        return
    sys.path.insert(0, str(ROOT / "train"))
    from device_campaign import pack_folder

    exclude = ("regions", "checkpoint-*") if finished else ("regions", "pipeline")
    print(f"{name}: packed into {pack_to}: {pack_folder(out, pack_to, name, exclude)}", flush=True)


def merge_row(results: Path, row: dict, keep: tuple[str, ...] = ()) -> None:
    budget_rows.merge_row(results, row, "restorers", MODELS, keep)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--samples", type=int, default=200_000, help="training samples per model")
    p.add_argument("--out", default="runs/ranking")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--tasks", default="aio3", help="harness tasks or presets")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "restorers_ranking.json"))
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N images of each task (smoke runs)")
    p.add_argument("--table", action="store_true", help="only print the results file as a table")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (evaluation: on the CPU)")
    p.add_argument("--workers", type=int, default=None, help="data loader processes (default: 0 on cpu, 8 on cuda)")
    p.add_argument("--clean-dir", default=None, help="BSD400's images elsewhere (a device's data_pack/BSD400)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop training after this long (a checkpoint is saved; the same command resumes it)")
    p.add_argument("--no-eval", action="store_true", help="train only; a later call without it evaluates")
    p.add_argument("--pack-to", default=None,
                   help="after training, cut each run folder into pieces of 15 MiB here (a device call's $OUT)")
    args = p.parse_args(argv)
    results = Path(args.results)
    if args.table:
        print(budget_rows.markdown(results, "restorers"))
        return 0
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        p.error(f"unknown restorer(s) {unknown}; choose from {', '.join(MODELS)}")
    if args.samples <= 0 or args.samples % BATCH:
        p.error(f"--samples must be a positive multiple of the batch size {BATCH}")
    if "clearair" in names and args.preset != "small":
        p.error("ClearAIR's quality condition comes from the shipped defusion-small identifier, which fits the small "
                "preset only: use --preset small or leave clearair out")
    data_root = Path(args.data_root)
    clean = Path(args.clean_dir) if args.clean_dir else data_root / "BSD400" / "gt"
    if not clean.is_dir():
        p.error(f"{clean} not found: --data-root must hold the BSD400 training images (or give --clean-dir)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here")
    workers = args.workers if args.workers is not None else (8 if args.device == "cuda" else 0)
    for name in names:
        out = Path(args.out) / name
        cmd = train_command(name, data_root, out, args.samples, args.preset, args.device, workers,
                            args.clean_dir and clean, args.max_minutes)  # fmt: skip
        trained = not (out / "pipeline" / "model_index.json").is_file()
        resumed_from = budget_rows.last_step(out / "train_history.jsonl")
        t0 = time.time()
        if trained:
            subprocess.run(cmd, check=True)
            fields = budget_rows.training_fields((time.time() - t0) / 60, resumed_from, args.device)
            reached, target = budget_rows.last_step(out / "train_history.jsonl"), args.samples // BATCH
            calls = out / "training_calls.jsonl"  # calls stopped by --max-minutes, recorded in the finished row
            earlier = [json.loads(line) for line in calls.read_text().splitlines()] if calls.is_file() else []
            if reached < target:  # stopped by --max-minutes: no row for a model short of the budget
                with open(calls, "a") as handle:
                    handle.write(json.dumps({**fields, "reached_step": reached}) + "\n")
                shutil.rmtree(out / "pipeline", ignore_errors=True)
                print(f"{name}: stopped at step {reached} of {target} (--max-minutes); the same command resumes it",
                      flush=True)  # fmt: skip
                pack_run(args.pack_to, out, name, finished=False)
                continue
            fields["command"] = shlex.join(["python", *map(shown, cmd[1:])])  # where and how it really ran
            if earlier:
                fields["earlier_calls"] = earlier
            (out / "training.json").write_text(json.dumps(fields, indent=1) + "\n")
        pack_run(args.pack_to, out, name, finished=True)
        if args.no_eval:
            print(f"{name}: trained ({out / 'pipeline'}); the same command without --no-eval evaluates it", flush=True)
            continue
        history = [json.loads(line) for line in open(out / "train_history.jsonl")]
        row = {"name": name, "train_samples": history[-1]["step"] * BATCH, "steps": history[-1]["step"], "batch": BATCH,
               "crop": CROP, "preset": args.preset, "final_loss": round(history[-1]["loss"], 5),
               "perception": PERCEPTION[name], "command": shlex.join(["python", *map(shown, cmd[1:])]),
               "eval": "harness, fp32, seed 0, told the task's degradation", "torch": torch.__version__,
               "date": datetime.date.today().isoformat()}  # fmt: skip
        training = out / "training.json"  # the call that finished training (here, or on a device)
        if training.is_file():
            row.update(json.loads(training.read_text()))
        row.update(evaluate_model(out / "pipeline", data_root, out, args.tasks, args.limit))
        if args.limit:
            row["eval_images_per_task"] = args.limit
        merge_row(results, row, keep=() if training.is_file() else budget_rows.TRAINING_FIELDS)
        print(f"{name}: {row['psnr']}", flush=True)
    if not args.no_eval and results.is_file():  # a train-only call (a device) has no results file to show
        print(budget_rows.markdown(results, "restorers"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
