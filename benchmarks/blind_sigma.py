"""Choose blind mode's noise estimator and scale on held-out training images, never on a test set.

    python benchmarks/blind_sigma.py --model defusion-small --data-root ../shared/data --runs wavelet:1,pca:0.8,pca:1

Blind mode (``instruction="auto"``) instructs Gaussian noise at ``noise_scale`` x the sigma that the pipeline's
``noise_estimator`` reads off the image. Every (estimator, scale) pair here restores the last ``--holdout``
BSD400 images (the images the training scripts hold out) at each noise level of ``--noise`` through
``defusion.eval.evaluate`` (the model's default sampler, seed 0), next to the same images instructed with the true
sigma. The pair with the best mean PSNR over the noise levels is what the shipped model's ``model_index.json``
should carry. ``--tasks`` evaluates test-set tasks instead, to report (not to choose).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ensemble_passes import holdout_root

from defusion.eval import evaluate
from defusion.eval.methods import PipelineMethod
from defusion.weights import resolve


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="defusion-small")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--runs", default="wavelet:1,pca:0.7,pca:0.8,pca:0.9,pca:1",
                   help="comma-separated ESTIMATOR:SCALE pairs to run blind")
    p.add_argument("--noise", default="noise15,noise25,noise50", help="noise levels of the held-out tasks")
    p.add_argument("--holdout", type=int, default=8)
    p.add_argument("--tasks", default="", help="comma-separated test tasks instead (to report, not to choose)")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)

    runs = [(r.split(":")[0].strip(), float(r.split(":")[1])) for r in args.runs.split(",") if r.strip()]
    method = PipelineMethod(resolve(args.model))
    pipe = method.pipe
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.tasks:
            root, tasks = args.data_root, [t.strip() for t in args.tasks.split(",") if t.strip()]
        else:
            root = holdout_root(args.data_root, args.holdout, Path(tmp))
            tasks = [f"BSD400val:{n.strip()}" for n in args.noise.split(",") if n.strip()]

        def run(label: str, instruction, run_tasks):
            method.instruction = instruction
            res = evaluate(method, run_tasks, root, limit=args.limit, lpips=False, method_name=label, progress=False)
            for task in run_tasks:
                if task not in res["tasks"]:
                    raise FileNotFoundError(res["skipped"].get(task, f"no data for {task}"))
                rows.setdefault(label, {})[task] = res["tasks"][task]["psnr"]
                rows.setdefault("input", {})[task] = res["tasks"][task]["input_psnr"]
            print(f"{label}: " + ", ".join(f"{t} {rows[label][t]:.2f}" for t in run_tasks), flush=True)

        for task in tasks:  # each task told its own degradation, e.g. noise15: the true sigma
            run("instructed, true sigma", task.split(":", 1)[1], [task])
        for est, scale in runs:
            pipe.register_to_config(noise_estimator=est, noise_scale=scale)
            run(f"blind, {est} x {scale:g}", "auto", tasks)

    what = f"first {args.limit}" if args.limit else "all"
    print(f"\n{args.model}, {method.sampler}, {what} images (PSNR dB)\n")
    print("| run | " + " | ".join(tasks) + " | mean |\n|---|" + "---:|" * (len(tasks) + 1))
    for label, row in [("input", rows.pop("input"))] + list(rows.items()):
        vals = [row[t] for t in tasks]
        print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {sum(vals) / len(vals):.2f} |")


if __name__ == "__main__":
    main()
