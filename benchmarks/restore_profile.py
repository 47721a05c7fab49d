"""Where the time of one blind restore goes, stage by stage, and how far the models' border bands reach.

    python benchmarks/restore_profile.py [--model defusion-small] [--size 512] [--sigma 25] [--repeats 3]
        [--out benchmarks/results/restore_profile_cpu]
    python benchmarks/restore_profile.py --borders      # flat-image border bands against the context border

The image is a centre crop of the first Kodak24 photo (``--image`` for another) with Gaussian noise of ``--sigma``,
restored with ``instruction="auto"`` and the model's default sampler. Stages are timed by wrapping the pipeline's
parts (forward hooks on the identifier, tokenizer, bridge and U-Net; the noise estimator, the instruction
builder, pre- and post-processing); "tiling, ensemble, scheduler" is what is left of the call. The median of
``--repeats`` calls after one warm-up is reported, with the thread count and torch version, as JSON and markdown.

``--borders`` restores a flat grey image told "haze" and "noise" with the context border set to 0, 8, 16 and 32
pixels and prints the mean deviation of the outermost 4-pixel strips from the interior: the measurement behind
each pipeline's ``context_border``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from defusion import DefusionPipeline  # noqa: E402
from defusion.images import load_image  # noqa: E402
from defusion.instructions import VisualInstruction  # noqa: E402
from defusion.pipelines import RestorerPipeline, pipeline_class  # noqa: E402
from defusion.weights import resolve  # noqa: E402

STAGES = ["identifier", "noise estimate", "instruction image", "tokenizer", "bridge", "unet", "pre/post-processing"]


class Timer:
    """Accumulates wall time per stage name while it is active."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, name, seconds):
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def wrap(self, fn, name):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - start)

        return timed

    def hook(self, module, name):
        starts = []
        module.register_forward_pre_hook(lambda m, a: starts.append(time.perf_counter()))
        module.register_forward_hook(lambda m, a, o: self.add(name, time.perf_counter() - starts.pop()))


def instrument(pipe: DefusionPipeline, timer: Timer) -> None:
    import defusion.pipelines.defusion_pipeline as dp

    timer.hook(pipe.bridge, "bridge")
    timer.hook(pipe.unet, "unet")  # the adapter's projections run inside it
    pipe.identifier.identify = timer.wrap(pipe.identifier.identify, "identifier")
    pipe.degradation_tokenizer.tokenize = timer.wrap(pipe.degradation_tokenizer.tokenize, "tokenizer")
    dp.estimate_noise_sigma = timer.wrap(dp.estimate_noise_sigma, "noise estimate")
    dp.to_model_batch = timer.wrap(dp.to_model_batch, "pre/post-processing")
    dp.postprocess = timer.wrap(dp.postprocess, "pre/post-processing")
    build = VisualInstruction.from_spec.__func__
    VisualInstruction.from_spec = classmethod(timer.wrap(build, "instruction image"))


def noisy_crop(path, size, sigma, seed=0) -> np.ndarray:
    img = load_image(path)
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    img = img[top : top + size, left : left + size]
    noisy = img + np.random.default_rng(seed).normal(0, sigma / 255.0, img.shape)
    return (np.round(np.clip(noisy, 0, 1) * 255) / 255).astype(np.float32)


def profile(args) -> dict:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pipe = DefusionPipeline.from_pretrained(args.model, dtype=torch.float32)
    load = time.perf_counter() - start
    pipe.set_progress_bar_config(disable=True)
    pipe.set_precision(args.precision)
    timer = Timer()
    instrument(pipe, timer)
    image = args.image or sorted((Path(args.data_root) / "Kodak24" / "gt").glob("*.png"))[0]
    img = noisy_crop(image, args.size, args.sigma)
    runs = []
    for i in range(args.repeats + 1):
        timer.seconds.clear()
        start = time.perf_counter()
        out = pipe(img, instruction="auto", generator=torch.Generator().manual_seed(0), output_type="np", tile_size=args.tile)
        total = time.perf_counter() - start
        if i:  # the first call warms up
            stages = {k: timer.seconds.get(k, 0.0) for k in STAGES}
            stages["tiling, ensemble, scheduler"] = total - sum(stages.values())
            runs.append((total, stages))
    total = float(np.median([r[0] for r in runs]))
    stages = {k: float(np.median([r[1][k] for r in runs])) for k in runs[0][1]}
    megapixels = img.shape[0] * img.shape[1] / 1e6
    passes = pipe.config.default_self_ensemble
    return {
        "model": args.model, "image": f"{Path(image).name} centre {img.shape[1]}x{img.shape[0]}, sigma {args.sigma}",
        "instruction": out.instructions[0], "steps": pipe.config.default_steps, "views": passes,
        "evaluations": pipe.num_evaluations(*img.shape[:2], out.instructions[0].split("(")[0], tile_size=args.tile),
        "tile": args.tile, "precision": args.precision, "threads": torch.get_num_threads(), "torch": torch.__version__, "load_seconds": load,
        "seconds": total, "seconds_per_mp": total / megapixels, "stages": stages,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def markdown(r: dict, command: str) -> str:
    lines = [
        f"# Blind restore profile: {r['model']}",
        "",
        f"`{command}`",
        "",
        f"{r['image']}; detected `{r['instruction']}`; {r['steps']} DDIM step(s) x {r['views']} view(s), "
        f"{r['evaluations']} denoiser evaluations; tile {r['tile']}; precision {r.get('precision', 'fp32')}; {r['threads']} threads, torch {r['torch']}.",
        f"Total {r['seconds']:.2f} s ({r['seconds_per_mp']:.1f} s/MP), model load {r['load_seconds']:.2f} s, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB.",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
    ]
    for k, v in r["stages"].items():
        lines.append(f"| {k} | {v:.3f} | {100 * v / r['seconds']:.1f} % |")
    return "\n".join(lines) + "\n"


def borders(args) -> None:
    flat = np.full((200, 296, 3), 0.3, np.float32)
    for name in ("defusion-small", "dfpir-small"):
        cls = pipeline_class(resolve(name))
        pipe = cls.from_pretrained(name, dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        for border in (0, 8, 16, 32):
            pipe.context_border = border
            row = []
            for told in ("haze", "noise"):
                if cls is RestorerPipeline:
                    out = pipe(flat, degradation=told, output_type="np").images[0]
                else:
                    out = pipe(flat, instruction=told, generator=torch.Generator().manual_seed(0), output_type="np",
                               self_ensemble=1).images[0]  # fmt: skip
                dev = np.abs(out * 255 - np.median(out[40:-40, 40:-40] * 255)).mean(axis=2)
                band = max(dev[:4].mean(), dev[-4:].mean(), dev[:, :4].mean(), dev[:, -4:].mean())
                row.append(f"{told} {band:.2f}")
            print(f"{name} context_border={border}: edge band (grey levels) " + ", ".join(row), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="defusion-small")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--image", default=None)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--sigma", type=float, default=25)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32", help="DefusionPipeline.set_precision")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    p.add_argument("--borders", action="store_true")
    args = p.parse_args(argv)
    if args.borders:
        return borders(args)
    r = profile(args)
    command = "python benchmarks/restore_profile.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(r, command.strip())
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".json").write_text(json.dumps({**r, "command": command.strip()}, indent=2) + "\n")
        Path(args.out + ".md").write_text(text)


if __name__ == "__main__":
    main()
