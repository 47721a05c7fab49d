"""What an identifier setting changes in blind mode, on all images, restoring only the images it changes.

    python benchmarks/blind_ab.py --model default --scene-kinds haze,underwater --baseline-scene-kinds none \\
        --tasks CBSD68:noise25,CBSD68:haze,Kodak24:haze
    python benchmarks/blind_ab.py --model default --baseline-scene-kinds haze,underwater \\
        --baseline-config '{"kind_thresholds": null}' --tasks Rain100L:paired,CBSD68:noise25

``--config`` / ``--baseline-config`` set other identifier config values (JSON) for B / A on top of the model's;
``--identifier DIR`` gives B another identifier (a trained candidate), with its own config under the same flags.

A blind restore depends on the image only through what the identifier finds, so the two settings (``B``, the
candidate, against ``A``, the baseline) give the same output wherever their findings (kinds, probabilities and
severities) are the same. For each task the script runs the identifier both ways on every input (the harness's
inputs: ``defusion.eval.tasks.iter_samples``), restores the images whose findings differ both ways, and reports
how many changed and the change of the task's mean PSNR over **all** its images (the sum of the per-image
differences divided by the task's image count), with the changed images listed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from defusion.eval.methods import PipelineMethod
from defusion.eval.runner import _run_method
from defusion.eval.tasks import iter_samples, parse_tasks
from defusion.metrics import psnr
from defusion.perception import DegradationIdentifier
from defusion.weights import resolve


def kinds_arg(value: str):
    return None if value.strip().lower() in ("", "none") else [k.strip() for k in value.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--tasks", required=True)
    p.add_argument("--scene-kinds", default="haze,underwater", help="candidate B's scene_kinds ('none': no scene view)")
    p.add_argument("--baseline-scene-kinds", default="none", help="baseline A's scene_kinds")
    p.add_argument("--config", type=json.loads, default={}, help="B's other identifier config values (JSON)")
    p.add_argument("--baseline-config", type=json.loads, default={}, help="A's other identifier config values (JSON)")
    p.add_argument("--identifier", default=None, help="B's identifier folder (default: the model's, as A)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    method = PipelineMethod(resolve(args.model))
    ident = method.pipe.identifier
    if ident is None:
        raise SystemExit(f"{args.model} has no identifier: it has no blind mode to compare")
    idents = {"A": ident, "B": ident}
    if args.identifier:
        idents["B"] = DegradationIdentifier.from_pretrained(args.identifier).to(ident.device, ident.dtype).eval()
    unknown = sorted({*args.config, *args.baseline_config} - set(ident.config))
    if unknown:
        raise SystemExit(f"not identifier config keys: {unknown}; the keys are {sorted(ident.config)}")
    keys = {*args.config, *args.baseline_config}
    settings = {"A": {**{k: idents["A"].config[k] for k in keys}, **args.baseline_config,
                      "scene_kinds": kinds_arg(args.baseline_scene_kinds)},
                "B": {**{k: idents["B"].config[k] for k in keys}, **args.config,
                      "scene_kinds": kinds_arg(args.scene_kinds)}}  # fmt: skip

    def use(name: str):
        method.pipe.identifier = idents[name]
        idents[name].register_to_config(**settings[name])
        return idents[name]

    rows = []
    for task in parse_tasks(args.tasks):
        n, changed = 0, []
        for sample in iter_samples(task, args.data_root, args.limit):
            n += 1
            rgb = np.repeat(sample.lq, 3, -1) if sample.lq.shape[-1] == 1 else sample.lq
            found = {}
            for name in settings:
                found[name] = [(k, round(pr, 4), round(s, 4)) for k, pr, s in use(name).identify(rgb)]
            if found["A"] == found["B"]:
                continue
            scores = {}
            for name in settings:
                use(name)
                scores[name] = psnr(_run_method(method, sample.lq), sample.gt, crop_multiple=None)
            changed.append({"image": sample.stem, "A": [k for k, _, _ in found["A"]], "B": [k for k, _, _ in found["B"]],
                            "psnr_A": scores["A"], "psnr_B": scores["B"]})  # fmt: skip
        delta = sum(c["psnr_B"] - c["psnr_A"] for c in changed) / max(1, n)
        rows.append({"task": task.name, "n": n, "changed": changed, "delta_mean_psnr": delta})
        print(f"{task.name}: {len(changed)} of {n} images change, mean PSNR {delta:+.3f} dB", flush=True)
    use("B")
    print(f"\n{args.model}, blind; A: {json.dumps(settings['A'])}, B: {json.dumps(settings['B'])}"
          f"{', identifier ' + args.identifier if args.identifier else ''}\n")
    print("| task | images | changed | mean PSNR, B - A (all images) | changed images: A -> B (dB, found) |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        ch = "; ".join(f"{c['image']} {c['psnr_A']:.2f} -> {c['psnr_B']:.2f} ({'+'.join(c['A']) or 'clean'} -> "
                       f"{'+'.join(c['B']) or 'clean'})" for c in r["changed"]) or "-"  # fmt: skip
        print(f"| {r['task']} | {r['n']} | {len(r['changed'])} | {r['delta_mean_psnr']:+.3f} | {ch} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "identifier_B": args.identifier,
                                               "settings": settings, "tasks": rows}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
