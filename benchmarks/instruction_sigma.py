"""How the instructed noise level steers the restoration: every test noise level against every instructed one.

    python benchmarks/instruction_sigma.py --model defusion-small --data-root ../shared/data --limit 5

For each task in ``--tasks`` (Gaussian noise at a known sigma) the pipeline runs once per instruction in
``--instructions`` (``noiseS``: a visual instruction degraded with sigma S; ``none``: no instruction, zero
residual tokens), the model's default sampler, seed 0, through ``defusion.eval.evaluate``. A well-behaved model peaks
where the instructed sigma matches the true one and degrades gently around it.
"""

from __future__ import annotations

import argparse

from defusion.eval import evaluate
from defusion.eval.methods import PipelineMethod
from defusion.weights import resolve


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="defusion-small")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--tasks", default="CBSD68:noise15,CBSD68:noise25,CBSD68:noise50,Kodak24:noise25")
    p.add_argument("--instructions", default="none,noise15,noise20,noise25,noise30,noise35,noise40,noise50")
    p.add_argument("--limit", type=int, default=5)
    args = p.parse_args(argv)

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    instructions = [i.strip() for i in args.instructions.split(",") if i.strip()]
    method = PipelineMethod(resolve(args.model))
    table: dict[str, dict[str, float]] = {}
    for inst in instructions:
        method.instruction = None if inst.lower() == "none" else inst
        res = evaluate(method, tasks, args.data_root, limit=args.limit, lpips=False, method_name=inst, progress=False)
        for task in tasks:
            if task not in res["tasks"]:
                raise FileNotFoundError(res["skipped"].get(task, f"no data for {task}"))
            table.setdefault(task, {"input": res["tasks"][task]["input_psnr"]})[inst] = res["tasks"][task]["psnr"]
        print(f"{inst}: " + ", ".join(f"{t} {table[t][inst]:.2f}" for t in tasks), flush=True)

    what = f"first {args.limit}" if args.limit else "all"
    print(f"\n{args.model}, {method.sampler}, {what} images per set (PSNR dB; columns: the instruction)\n")
    print("| task | input | " + " | ".join(instructions) + " |\n|---|" + "---:|" * (len(instructions) + 1))
    for task, row in table.items():
        print(f"| {task} | {row['input']:.2f} | " + " | ".join(f"{row[i]:.2f}" for i in instructions) + " |")


if __name__ == "__main__":
    main()
