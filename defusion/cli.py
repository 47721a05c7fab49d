"""The ``defusion`` command.

    defusion instruct rain+noise -o grid.png        # null | instruction | difference
    defusion instruct --all -o gallery.png          # one instruction per registered degradation
    defusion instruct --list                        # registered degradation names, one a line
    defusion degrade in.png rain+noise25 -o out.png # apply degradations to an image
    defusion eval --method nlm --tasks aio3 --data-root DATA --out results/nlm
    defusion serve [--port 7860] [--model NAME_OR_FOLDER]   # a web page (pip install -e ".[web]")
    defusion restore in.png -o out.png --model DIR --instruction auto --compare cmp.png
    defusion demo -o outputs/demo                   # the README's main job
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def _instruct(args) -> int:
    from . import degradations as D
    from .instructions import VisualInstruction, instruction_gallery
    from .images import make_grid, save_png

    if args.list:
        for name in D.names():
            print(name)
        return 0
    names = D.names() if args.all else args.names
    if not names:
        print("defusion instruct: give degradation names (e.g. rain+noise), --all or --list", file=sys.stderr)
        return 2
    insts = [
        VisualInstruction.from_names(n, severity=args.severity, seed=args.seed, size=args.size, ground=args.ground)
        for n in names
    ]
    if len(insts) == 1:
        img = insts[0].grid()
    elif args.all:
        img = instruction_gallery(insts, cols=args.cols)
    else:
        img = make_grid([im for i in insts for im in (i.null, i.image)], [s for i in insts for s in ("null", i.label)], cols=2)
    out = save_png(img, args.output)
    for i in insts:
        print(f"{i.label}: {i.spec.to_json()}")
    print(out)
    return 0


def _degrade(args) -> int:
    from . import degradations as D
    from .images import load_image, save_image

    img = load_image(args.input)
    spec = D.parse(args.names, severity=args.severity, rng=args.seed)
    out = spec.apply(img, np.random.default_rng(args.seed))
    print(spec.to_json())
    print(save_image(out, args.output))
    return 0


def _demo(args) -> int:
    from visual_grounds import GroundPool

    from . import degradations as D
    from .assets import sample_path
    from .images import load_image, make_grid, save_png
    from .instructions import VisualInstruction, instruction_gallery

    out = Path(args.output)
    model = None if args.no_restore else _demo_model(args.model)  # fail before the galleries, not after
    clean = load_image(sample_path("clean"))
    rows, labels = [], []
    for name in D.names():
        spec = D.parse(name, severity=args.severity, rng=args.seed)
        inst = VisualInstruction.from_spec(spec, seed=args.seed)
        degraded = spec.apply(clean, np.random.default_rng(args.seed))
        rows += [degraded, inst.image]
        labels += [f"image: {spec.label}", "its visual instruction"]
    p1 = save_png(make_grid(rows, labels, cols=4, tile_height=256), out / "degradations.png")
    mixed = ["rain+noise", "haze+snow", "low_light+noise", "motion_blur+jpeg", "rain+snow+noise"]
    insts = [VisualInstruction.from_names(m, severity=args.severity, seed=args.seed) for m in mixed]
    p2 = save_png(instruction_gallery(insts, cols=3), out / "mixed_instructions.png")
    p3 = save_png(GroundPool().gallery(8, seed=args.seed), out / "grounds.png")
    sample = load_image(sample_path("degraded"))
    inst = VisualInstruction.from_names("rain+noise", severity=args.severity, seed=args.seed)
    p4 = save_png(make_grid([sample, inst.image, clean], ["input (rain+noise)", "instruction", "clean"], tile_height=384), out / "sample.png")
    for p in (p1, p2, p3, p4):
        print(p)
    if not args.no_restore:
        print(_demo_restore(sample, clean, out / "restored.png", model, args.seed))
    return 0


def _demo_model(model):
    """The model the demo restores with: ``model`` if given (it must exist), else defusion-small, else another
    shipped defusion-small* model."""
    from .weights import available, resolve

    if model is not None:
        from .pipelines import DefusionPipeline, pipeline_class

        folder = resolve(model)
        if not (Path(folder) / "model_index.json").is_file():
            raise FileNotFoundError(f"{model} is not a DefusionPipeline folder nor a shipped model {available()}")
        kind = pipeline_class(folder)
        if kind is not DefusionPipeline:
            raise ValueError(f"the demo restores with a DefusionPipeline; {model} holds a {kind.__name__} "
                             f"(try: defusion restore IMAGE -o OUT.png --model {model})")  # fmt: skip
        return model
    shipped = [n for n in available() if n.startswith("defusion-small")]
    if not shipped:
        raise FileNotFoundError("no Defusion model is shipped with this install (defusion.weights.available() is empty)")
    return "defusion-small" if "defusion-small" in shipped else shipped[0]


def _demo_restore(sample, clean, path, model, seed):
    """Restore the bundled sample blind and instructed with a shipped model; write input | ... | clean."""
    import torch

    from .metrics import psnr
    from .pipelines import DefusionPipeline
    from .images import make_grid, save_png

    pipe = DefusionPipeline.from_pretrained(model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    tiles, labels = [sample], [f"input (rain+noise) {psnr(sample, clean, None):.2f} dB"]
    blind = pipe(sample, instruction="auto", generator=torch.Generator().manual_seed(seed), output_type="np",
                 instruction_seed=seed)  # fmt: skip
    detected = "+".join(d[0] for d in blind.detected[0]) if blind.detected and blind.detected[0] else None
    told = pipe(sample, instruction="rain+noise", generator=torch.Generator().manual_seed(seed), output_type="np",
                instruction_seed=seed)  # fmt: skip
    tiles += [blind.images[0], pipe.make_instruction("rain+noise", seed=seed).image, told.images[0], clean]
    labels += [f"blind ({detected or 'nothing'} detected) {psnr(blind.images[0], clean, None):.2f} dB",
               "instruction: rain+noise", f"instructed {psnr(told.images[0], clean, None):.2f} dB", "clean"]  # fmt: skip
    print(f"restored.png: {model}; " + "; ".join(labels[:2] + labels[3:4]))
    return save_png(make_grid(tiles, labels, cols=5, tile_height=384), path)


def _eval(args) -> int:
    from .eval import PRESETS, evaluate, method_names

    if args.list:
        from .weights import available

        print("methods: " + ", ".join(method_names()))
        print("shipped models: " + ", ".join(available()) + " (or any saved pipeline folder)")
        for k, v in PRESETS.items():
            print(f"preset {k}: {','.join(v)}")
        return 0
    if not args.method or not args.tasks:
        print("defusion eval: --method and --tasks are required (or --list)", file=sys.stderr)
        return 2
    result = evaluate(
        args.method, args.tasks, args.data_root, out_dir=args.out, limit=args.limit, lpips=not args.no_lpips
    )
    from .eval import markdown_table

    if not result["tasks"]:
        reasons = "; ".join(f"{k}: {v}" for k, v in result["skipped"].items())
        print(f"defusion eval: no task ran, nothing written (--data-root {args.data_root}): {reasons}", file=sys.stderr)
        return 1
    print(markdown_table({result["method"]: result}), end="")
    if args.out:
        print(f"wrote {args.out}/summary.json, summary.md, per_image.csv, gallery/")
    return 0


def _restore(args) -> int:
    import torch

    from .images import load_image, make_grid, save_image, save_png
    from .pipelines import DefusionPipeline, RestorerPipeline, pipeline_class
    from .weights import resolve

    folder = resolve(args.model)
    if pipeline_class(folder) is RestorerPipeline:  # a clear error where the folder holds no pipeline
        return _restore_regression(args, folder)
    pipe = DefusionPipeline.from_pretrained(folder, dtype=torch.float32)
    img = load_image(args.input)
    inst = None if args.instruction.lower() == "none" else args.instruction
    out = pipe(img, instruction=inst, num_inference_steps=args.steps, generator=torch.Generator().manual_seed(args.seed),
               output_type="np", tile_size=args.tile, instruction_seed=args.seed, self_ensemble=args.self_ensemble)  # fmt: skip
    restored = out.images[0]
    print(f"instruction: {out.instructions[0]}" + (f" (detected: {out.detected[0]})" if out.detected else ""))
    print(save_image(restored, args.output))
    if args.compare:
        vi = pipe.make_instruction(inst, seed=args.seed) if inst not in (None, "auto") else None
        if inst == "auto" and out.detected and out.detected[0]:
            vi = pipe.identify(img, seed=args.seed)[1]
        ground = vi.image if vi is not None else np.full((64, 64, 3), 0.5, np.float32)
        grid = make_grid([img, ground, restored], ["input", f"instruction: {out.instructions[0]}", "restored"],
                         tile_height=min(512, img.shape[0]))  # fmt: skip
        print(save_png(grid, args.compare))
    return 0


def _restore_regression(args, folder) -> int:
    """``defusion restore --model dfpir-small``: a RestorerPipeline, told the degradation (or "auto")."""
    import torch

    from .images import load_image, make_grid, save_image, save_png
    from .pipelines import RestorerPipeline

    if args.self_ensemble not in (None, 1):
        raise ValueError("--self-ensemble is a Defusion option; a RestorerPipeline runs one pass")
    pipe = RestorerPipeline.from_pretrained(folder, dtype=torch.float32)
    img = load_image(args.input)
    deg = None if args.instruction.lower() == "none" else args.instruction
    out = pipe(img, degradation=deg, output_type="np", tile_size=args.tile)
    print(f"degradation: {out.degradations[0]}" + (" (detected)" if deg == "auto" else ""))
    print(save_image(out.images[0], args.output))
    if args.compare:
        grid = make_grid([img, out.images[0]], ["input", f"restored for: {out.degradations[0]}"],
                         tile_height=min(512, img.shape[0]))  # fmt: skip
        print(save_png(grid, args.compare))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defusion", description="All-in-one image restoration with visual instructions.")
    sub = p.add_subparsers(dest="command", required=True)

    pi = sub.add_parser("instruct", help="compose visual instructions and write them as a PNG grid")
    pi.add_argument("names", nargs="*", help="degradation names joined by '+', e.g. rain+noise or noise25+jpeg10")
    pi.add_argument("-o", "--output", default="instruction.png")
    pi.add_argument("--list", action="store_true", help="print the registered degradation names and exit")
    pi.add_argument("--all", action="store_true", help="one instruction per registered degradation")
    pi.add_argument("--severity", type=float, default=None, help="0..1, default 0.5")
    pi.add_argument("--seed", type=int, default=0)
    pi.add_argument("--size", type=int, default=224)
    pi.add_argument("--ground", choices=["pool", "blank", "simple"], default="pool")
    pi.add_argument("--cols", type=int, default=5)
    pi.set_defaults(fn=_instruct)

    pd = sub.add_parser("degrade", help="apply degradations to an image")
    pd.add_argument("input")
    pd.add_argument("names", help="degradation names joined by '+'")
    pd.add_argument("-o", "--output", required=True)
    pd.add_argument("--severity", type=float, default=None, help="0..1, default 0.5")
    pd.add_argument("--seed", type=int, default=0)
    pd.set_defaults(fn=_degrade)

    pe = sub.add_parser("eval", help="evaluate a method on test tasks with explicit conventions")
    pe.add_argument("--method", help="identity, nlm, bm3d, dcp, unsharp, wiener (see --list), a shipped model "
                    "(defusion-small, blind) or a pipeline folder")
    pe.add_argument("--tasks", help="comma-separated SET:degradation names and/or presets (aio3, aio5, defusion8, mixed6, noise, jpeg)")
    pe.add_argument("--data-root", default=os.environ.get("DEFUSION_DATA", "data"),
                    help="folder holding SET/gt (and SET/lq) folders, e.g. CBSD68/gt/*.png (default: $DEFUSION_DATA, else ./data)")
    pe.add_argument("--out", default=None, help="output folder for CSV, JSON, markdown and galleries")
    pe.add_argument("--limit", type=int, default=None, help="first N images of each set (sorted by name)")
    pe.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    pe.add_argument("--list", action="store_true", help="print methods and presets")
    pe.set_defaults(fn=_eval)

    pr = sub.add_parser("restore", help="restore an image with a shipped model or a saved pipeline")
    pr.add_argument("input")
    pr.add_argument("-o", "--output", required=True)
    pr.add_argument("--model", default="defusion-small",
                    help="a shipped model (defusion.weights.available(): defusion-small, dfpir-small) or a saved "
                         "DefusionPipeline / RestorerPipeline folder")
    pr.add_argument("--instruction", default="auto", help="auto (blind), none, or names like rain+noise")
    pr.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's, see its card)")
    pr.add_argument("--tile", type=int, default=512)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--self-ensemble", nargs="?", type=int, const=8, default=None, metavar="N",
                    help="average N (1, 2, 4, 8, 16 or 32; alone: 8) restorations of rotated/flipped/shifted copies: "
                         "N times slower, better (default: the model's, see its card)")
    pr.add_argument("--compare", default=None, metavar="PNG", help="also write input | instruction | output")
    pr.set_defaults(fn=_restore)

    pm = sub.add_parser("demo", help="restore the bundled sample with the shipped model; instruction galleries")
    pm.add_argument("-o", "--output", default="outputs/demo")
    pm.add_argument("--severity", type=float, default=0.6)
    pm.add_argument("--seed", type=int, default=0)
    pm.add_argument("--model", default=None, help="shipped model or folder for restored.png (default: defusion-small, "
                    "else another shipped defusion-small* model)")
    pm.add_argument("--no-restore", action="store_true", help="only the instruction galleries")
    pm.set_defaults(fn=_demo)

    ps = sub.add_parser("serve", help="a web page to restore photos (offline; needs the web extra)")
    ps.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    ps.add_argument("--port", type=int, default=7860)
    ps.add_argument("--model", default="defusion-small", help="the page's default model: shipped name or folder")
    ps.add_argument("--max-megapixels", type=float, default=12.0, help="larger uploads are refused")
    ps.add_argument("--quiet", action="store_true")
    ps.set_defaults(fn=_serve)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p


def _serve(args) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError('the web page needs Gradio: pip install -e ".[web]"') from None
    from .pipelines import pipeline_class
    from .web import serve
    from .weights import resolve

    if not 0 < args.port < 65536 or args.max_megapixels <= 0:
        raise ValueError("--port must be 1-65535 and --max-megapixels > 0")
    pipeline_class(resolve(args.model))  # a missing or wrong model folder fails here, before the server starts
    serve(args.host, args.port, args.model, args.max_megapixels, quiet=args.quiet)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print(f"defusion {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every failure is one line on stderr; --debug shows where it came from
        if args.debug:
            raise
        kind = "" if isinstance(e, (ValueError, FileNotFoundError, TypeError)) else f"{type(e).__name__}: "
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"defusion {args.command}: error: {kind}{message[:500]} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
