"""What a false alarm and a miss of one kind cost a blind restoration, and the threshold that balances them.

    python benchmarks/identifier_costs.py --model defusion-small --data-root ../shared/data --kind haze --base noise25

On the last ``--holdout`` BSD400 images (held out by the training scripts, never a test set), two tasks:
``BASE`` (e.g. sigma-25 noise; the kind is absent) and ``KIND+BASE`` (the kind at a random severity, then the
base). Each runs blind (``instruction="auto"``) twice: with ``KIND`` always reported (identifier threshold 0
for it) and never reported (threshold 1), everything else as the identifier finds it. The false-alarm cost is
the PSNR lost on ``BASE`` by reporting the kind; the miss cost is the PSNR lost on ``KIND+BASE`` by not
reporting it. Reporting the kind at presence probability p pays off on average when p x miss > (1 - p) x false
alarm, so the balancing threshold is false alarm / (false alarm + miss): the value for the identifier's
``kind_thresholds``. Every run goes through ``defusion.eval.evaluate`` (the model's default sampler, seed 0).
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
    p.add_argument("--kind", default="haze")
    p.add_argument("--base", default="noise25", help="the degradation both tasks share (noise0: none)")
    p.add_argument("--holdout", type=int, default=8)
    args = p.parse_args(argv)

    method = PipelineMethod(resolve(args.model))
    ident = method.pipe.identifier
    if ident is None or args.kind not in ident.kinds:
        raise ValueError(f"{args.model} has no identifier that reports {args.kind!r}")
    saved = dict(ident.config.kind_thresholds or {})
    absent, present = f"BSD400val:{args.base}", f"BSD400val:{args.kind}+{args.base}"
    psnr = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = holdout_root(args.data_root, args.holdout, Path(tmp))
        for reported, thr in (("always", 0.0), ("never", 1.0)):
            ident.register_to_config(kind_thresholds={**saved, args.kind: thr})
            res = evaluate(method, [absent, present], root, lpips=False, method_name=reported, progress=False)
            for task in (absent, present):
                psnr[reported, task] = res["tasks"][task]["psnr"]
                psnr["input", task] = res["tasks"][task]["input_psnr"]
            print(f"{args.kind} {reported} reported: {absent} {psnr[reported, absent]:.2f}, "
                  f"{present} {psnr[reported, present]:.2f}", flush=True)  # fmt: skip
    ident.register_to_config(kind_thresholds=saved or None)

    false_alarm = psnr["never", absent] - psnr["always", absent]
    miss = psnr["always", present] - psnr["never", present]
    print(f"\n{args.model}, blind, {method.sampler}, last {args.holdout} BSD400 images (PSNR dB)\n")
    print(f"| task | input | {args.kind} always reported | never reported |\n|---|---:|---:|---:|")
    for task in (absent, present):
        inp = "clean" if psnr["input", task] is None else f"{psnr['input', task]:.2f}"  # base noise0: no degradation
        print(f"| {task} | {inp} | {psnr['always', task]:.2f} | {psnr['never', task]:.2f} |")
    print(f"\nfalse alarm costs {false_alarm:.2f} dB, a miss {miss:.2f} dB", end="")
    if false_alarm > 0 and miss > 0:
        print(f": balancing threshold {false_alarm / (false_alarm + miss):.2f}")
    else:
        print(": one of them costs nothing here, so no threshold balances them")


if __name__ == "__main__":
    main()
