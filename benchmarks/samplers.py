"""Samplers side by side on one Defusion pipeline: each (sampler, steps) evaluated with the harness in one run.

    python benchmarks/samplers.py runs/table5/epsilon/pipeline --samplers ddim:1,ddim:4,ddim-leading:4,dpm++:10 \\
        --tasks CBSD68:noise25,Kodak24:rain --instruction task --data-root ../shared/data \\
        --out benchmarks/results/samplers_table5_epsilon

A sampler is a name of ``defusion.diffusion.SAMPLERS`` (``ddim``: the pipelines' own DDIM at trailing timesteps,
no clipping; ``ddim-leading``: diffusers' classic DDIM, timesteps 751, 501, ... with the x0 estimate clamped to
[-2, 2]; ``dpm++``, ``unipc``, ``euler``) and a number of steps; each keeps the pipeline's noise schedule and
prediction type. Every setting runs through ``defusion.eval.evaluate`` (fp32, seed 0, one view) with the given
``--instruction`` (``task``: told each task's degradation; ``auto``: blind; ``none``). Writes ``OUT.json`` (one
row per setting: PSNR per task and seconds per megapixel, the mean over tasks) and ``OUT.md`` after each setting;
run again, the same sweep skips the settings OUT.json already holds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

import torch

from defusion.diffusion import SAMPLERS
from defusion.eval import evaluate
from defusion.eval.methods import PipelineMethod
from defusion.weights import resolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from budget_rows import cpu_name  # noqa: E402


def parse_settings(text: str) -> list[tuple[str, int]]:
    """``"ddim:1,dpm++:10"`` -> [("ddim", 1), ("dpm++", 10)]."""
    settings = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, _, steps = item.rpartition(":")
        if name not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
            raise ValueError(f"bad sampler setting {item!r}: write NAME:STEPS with NAME one of {', '.join(SAMPLERS)}")
        settings.append((name, int(steps)))
    if not settings:
        raise ValueError("--samplers is empty")
    return settings


def markdown(result: dict) -> str:
    tasks = list(result["input_psnr"])
    lines = ["| sampler | steps | " + " | ".join(tasks) + " | s/MP |", "|---|---:|" + "---:|" * (len(tasks) + 1),
             "| input | | " + " | ".join(f"{result['input_psnr'][t]:.2f}" for t in tasks) + " | |"]
    for r in result["rows"]:
        vals = " | ".join(f"{r['psnr'][t]:.2f}" for t in tasks)
        lines.append(f"| {r['sampler']} | {r['steps']} | {vals} | {r['seconds_per_mp']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipeline", help="a Defusion pipeline folder or shipped model name")
    p.add_argument("--samplers", default="ddim:1,ddim:4,ddim-leading:4,dpm++:10",
                   help=f"comma-separated NAME:STEPS, NAME of {', '.join(SAMPLERS)}")
    p.add_argument("--tasks", default="CBSD68:noise25,Kodak24:rain,Kodak24:haze")
    p.add_argument("--instruction", default="task", help="task (told each task's degradation), auto (blind), none")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--limit", type=int, default=None, help="first N images of each task (smoke runs)")
    p.add_argument("--out", required=True, help="OUT.json and OUT.md are written")
    args = p.parse_args(argv)
    try:
        settings = parse_settings(args.samplers)
    except ValueError as e:
        p.error(str(e))
    instruction = None if args.instruction.lower() == "none" else args.instruction
    folder = resolve(args.pipeline)
    rows, inputs, prediction = done_rows(Path(args.out), args)
    for name, steps in settings:
        if any((r["sampler"], r["steps"]) == (name, steps) for r in rows):
            continue  # evaluated by an earlier, stopped run of the same sweep
        method = PipelineMethod(folder, instruction=instruction, steps=steps, self_ensemble=1, scheduler=name)
        prediction = method.pipe.scheduler.config.prediction_type
        summary = evaluate(method, args.tasks, args.data_root, lpips=False, gallery=0, limit=args.limit,
                           method_name=f"{name}:{steps}", progress=False)  # fmt: skip
        if not summary["tasks"]:
            p.error(f"no task could run: {summary['skipped']}")
        tasks = summary["tasks"]
        inputs = {t: round(v["input_psnr"], 2) for t, v in tasks.items()}
        row = {"sampler": name, "steps": steps, "psnr": {t: round(v["psnr"], 2) for t, v in tasks.items()},
               "seconds_per_mp": round(sum(v["seconds_per_mp"] for v in tasks.values()) / len(tasks), 3),
               "cpu": cpu_name(), "threads": torch.get_num_threads()}  # fmt: skip
        rows.append(row)
        rows.sort(key=lambda r: settings.index((r["sampler"], r["steps"])) if (r["sampler"], r["steps"]) in settings
                  else len(settings))  # the command's order; rows it does not name last  # fmt: skip
        print(f"{name}:{steps} {row['psnr']}", flush=True)
        write(Path(args.out), result_of(args, argv, prediction, inputs, rows))  # after each setting: a stop loses one
    print(markdown(result_of(args, argv, prediction, inputs, rows)))
    return 0


def done_rows(out: Path, args) -> tuple[list, dict, str | None]:
    """The rows (and input PSNRs) an earlier run of the same sweep (pipeline, tasks, instruction, limit) left in
    OUT.json, so that a stopped sweep resumes; nothing when OUT.json is another sweep's."""
    path = out.with_suffix(".json")
    if not path.is_file():
        return [], {}, None
    old = json.loads(path.read_text())
    same = (old.get("pipeline"), old.get("instruction"), old.get("eval_images_per_task"),
            list(old.get("input_psnr", {})))
    if same != (str(args.pipeline), args.instruction, args.limit, [t.strip() for t in args.tasks.split(",")]):
        return [], {}, None
    for r in old["rows"]:  # files written before rows recorded their processor said it once for all
        r.setdefault("cpu", old.get("cpu")), r.setdefault("threads", old.get("threads"))
    return old["rows"], old["input_psnr"], old["prediction_type"]


def result_of(args, argv, prediction: str, inputs: dict, rows: list) -> dict:
    result = {
        "pipeline": str(args.pipeline),
        "prediction_type": prediction,
        "instruction": args.instruction,
        "eval": "harness, fp32, seed 0, one view",
        "input_psnr": inputs,
        "rows": rows,
        "command": shlex.join(["python", "benchmarks/samplers.py", *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    if args.limit:
        result["eval_images_per_task"] = args.limit
    return result


def write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
