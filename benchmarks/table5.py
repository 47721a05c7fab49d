"""Defusion Table 5 at CPU scale: each variant trained from scratch on the same data, seed and sample budget.

    python benchmarks/table5.py --variants ours,image_space,no_instruction,blank_ground [--samples 200000] \\
        [--out runs/table5] [--data-root ../shared/data] [--results benchmarks/results/table5.json]

Every variant is the ``MINI`` U-Net (the small preset's shape at half its widths and one res block a level, 2.4 M
parameters) with a bridge of three residual blocks a
level (32 channels at full resolution) and the adapter, trained by ``train/train_defusion.py`` from scratch with
the shipped, frozen degradation tokenizer, on BSD400 (its last 8 images held out) with synthetic noise / rain /
haze drawn from one 1,024-entry instruction bank (the same specs for every variant, so every variant sees the same
degradations), 64 px crops, batch 32, learning rate 1e-3 (cosine), bf16, EMA, seed 0, for ``--samples`` samples.
The variants change one thing each (``VARIANTS``):

* ``ours``: visual instructions on the TE42-like ground pool, diffusion in degradation space (y0 = x_LQ - x_HQ);
* ``image_space``: the same in image space (y0 = x_HQ), Table 5's "naive diffusion";
* ``blank_ground`` / ``simple_ground``: the instruction degrades a flat grey / a simple pattern ground;
* ``no_instruction``: no instruction in training or restoration (zero tokens);
* ``epsilon``: the paper's objective, epsilon prediction at uniform timesteps (the others predict x0 at the four
  inference timesteps, half of the samples at the first: the shipped recipe).

Text instructions (Table 5's CLIP row) are not a variant: no pretrained text encoder can be had offline here, and
one trained from nothing is not the paper's.

Each trained variant is evaluated with the harness (``defusion.eval.evaluate``, fp32, seed 0, one view) on
``EVAL_TASKS``, told the task's degradation (``no_instruction`` is told nothing), at 1 DDIM step, and at 4 for
``ours`` and ``epsilon``. Its row (the exact training command included) replaces the row of the same name in
``--results`` (under a lock), so variants can be run side by side or in separate sessions. A variant whose run
folder already holds a trained pipeline is only evaluated; an interrupted one resumes from its last checkpoint.
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

# the three trained degradations, real rain, and a mixture no variant was trained on (rain streaks over a hazy
# scene), which tests whether an instruction of two degradations composes
EVAL_TASKS = ["CBSD68:noise25", "Kodak24:rain", "Kodak24:haze", "Rain100L:paired", "Kodak24:haze+rain"]
X0 = ["--timestep_sampling", "inference", "--p_first_step", "0.5"]
# name -> (train_defusion.py flags, restored with the task's instruction, DDIM step counts evaluated)
VARIANTS: dict[str, tuple[list[str], bool, tuple[int, ...]]] = {
    "ours": (X0, True, (1, 4)),
    "image_space": (X0 + ["--diffusion_space", "image"], True, (1,)),
    "blank_ground": (X0 + ["--ground", "blank"], True, (1,)),
    "simple_ground": (X0 + ["--ground", "simple"], True, (1,)),
    "no_instruction": (X0 + ["--instruction_mode", "none"], False, (1,)),
    "epsilon": (["--prediction_type", "epsilon", "--timestep_sampling", "uniform"], True, (1, 4)),
}
BATCH, CROP, BANK = 32, 64, 1024
# DefusionUNet arguments that replace the small preset's (75 training samples/s at 64 px on two CPU cores)
MINI = {"block_out_channels": [16, 32, 64, 96], "layers_per_block": 1, "norm_num_groups": 8, "cross_attention_dim": 64}


def train_command(name: str, data_root: Path, out: Path, samples: int) -> list[str]:
    """The training run of one variant (the same for every variant but its own flags)."""
    if samples % BATCH:
        raise ValueError(f"--samples must be a multiple of the batch size {BATCH}")
    return [sys.executable, str(ROOT / "train" / "train_defusion.py"), "--preset", "small", "--unet_overrides", json.dumps(MINI),
            "--tokenizer", str(ROOT / "defusion" / "weights" / "defusion-small" / "degradation_tokenizer"),
            "--clean_dirs", str(data_root / "BSD400" / "gt"), "--kinds", "noise,rain,haze",
            "--resolution", str(CROP), "--train_batch_size", str(BATCH), "--max_train_steps", str(samples // BATCH),
            "--bridge_blocks", "3", "--bridge_width0", "32",
            "--learning_rate", "1e-3", "--min_learning_rate", "1e-6", "--lr_warmup_steps", "100",
            "--mixed_precision", "bf16", "--use_ema", "--data_on_device", "--instruction_bank", str(BANK),
            "--ground_cache", "256", "--validation_steps", "0", "--checkpointing_steps", "500",
            "--checkpoints_total_limit", "1", "--log_every", "50", "--report_to", "none", "--seed", "0", "--cpu",
            "--resume_from_checkpoint", "latest", "--output_dir", str(out), *VARIANTS[name][0]]  # fmt: skip


def ground_of(name: str) -> str:
    flags = VARIANTS[name][0]
    return flags[flags.index("--ground") + 1] if "--ground" in flags else "pool"


def share_bank(name: str, out_root: Path) -> None:
    """Copy the instruction bank of an earlier variant with the same ground (the same specs, and tokens that take
    minutes to make on a CPU) into this variant's run folder, where train_defusion.py picks it up."""
    target = out_root / name / "instruction_bank"
    if (target / "specs.json").is_file():
        return
    for other in VARIANTS:
        source = out_root / other / "instruction_bank"
        if other != name and ground_of(other) == ground_of(name) and (source / "specs.json").is_file():
            shutil.copytree(source, target)
            return


def evaluate_variant(name: str, pipeline: Path, data_root: Path, out: Path, limit: int | None = None) -> dict:
    """PSNR per task (and the input's) at each step count of the variant, with the harness."""
    from defusion.eval import evaluate
    from defusion.eval.methods import PipelineMethod

    _, instructed, steps_list = VARIANTS[name]
    row = {}
    for steps in steps_list:
        method = PipelineMethod(pipeline, instruction="task" if instructed else None, steps=steps, self_ensemble=1)
        summary = evaluate(method, EVAL_TASKS, data_root, out_dir=out / f"eval_{steps}step", lpips=False, limit=limit,
                           gallery=2, method_name=name, progress=False)  # fmt: skip
        key = "psnr" if steps == 1 else f"psnr_{steps}steps"
        row[key] = {t: round(v["psnr"], 2) for t, v in summary["tasks"].items()}
        row["input_psnr"] = {t: round(v["input_psnr"], 2) for t, v in summary["tasks"].items()}
        row["num_parameters"] = method.num_parameters - sum(p.numel() for p in method.pipe.degradation_tokenizer.parameters())
    return row


def merge_row(results: Path, row: dict, keep: tuple[str, ...] = ()) -> None:
    """Replace (or add) the row of ``row["name"]`` in the results file (``budget_rows.merge_row``)."""
    budget_rows.merge_row(results, row, "variants", list(VARIANTS), keep)


def markdown(results: Path) -> str:
    return budget_rows.markdown(results, "variants")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--samples", type=int, default=200_000, help="training samples per variant")
    p.add_argument("--out", default="runs/table5")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "table5.json"))
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N images of each task (smoke runs)")
    p.add_argument("--table", action="store_true", help="only print the results file as a table")
    args = p.parse_args(argv)
    results = Path(args.results)
    if args.table:
        print(markdown(results))
        return 0
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    data_root = Path(args.data_root)
    if not (data_root / "BSD400" / "gt").is_dir():
        p.error(f"{data_root}/BSD400/gt not found: --data-root must hold the BSD400 training images")
    for name in names:
        out = Path(args.out) / name
        cmd = train_command(name, data_root, out, args.samples)
        t0 = time.time()
        trained = not (out / "pipeline" / "model_index.json").is_file()
        resumed_from = budget_rows.last_step(out / "train_history.jsonl")
        if trained:
            share_bank(name, Path(args.out))
            subprocess.run(cmd, check=True)
        train_minutes = (time.time() - t0) / 60
        history = [json.loads(line) for line in open(out / "train_history.jsonl")]
        losses = [r["loss"] for r in history if "loss" in r]
        row = {"name": name, "train_samples": history[-1]["step"] * BATCH, "steps": history[-1]["step"],
               "batch": BATCH, "crop": CROP, "model": "mini", "final_loss": round(losses[-1], 5) if losses else None,
               "command": shlex.join(["python", *map(shown, cmd[1:])]),
               "eval": "harness, fp32, seed 0, one view, told the task's degradation" if VARIANTS[name][1] else
                       "harness, fp32, seed 0, one view, no instruction",
               "torch": torch.__version__, "date": datetime.date.today().isoformat()}  # fmt: skip
        if trained:
            row.update(budget_rows.training_fields(train_minutes, resumed_from))
        row.update(evaluate_variant(name, out / "pipeline", data_root, out, args.limit))
        if args.limit:
            row["eval_images_per_task"] = args.limit
        merge_row(results, row, keep=() if trained else (*budget_rows.TRAINING_FIELDS, "ran_as"))
        print(f"{name}: {row['psnr']}", flush=True)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
