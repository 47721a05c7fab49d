"""The ``defusion`` command.

    defusion instruct rain+noise -o grid.png        # null | instruction | difference
    defusion instruct --all -o gallery.png          # one instruction per registered degradation
    defusion instruct --list                        # registered degradation names, one a line
    defusion degrade in.png rain+noise25 -o out.png # apply degradations to an image
    defusion eval --method nlm --tasks aio3 --data-root DATA --out results/nlm
    defusion serve [--port 7860] [--model NAME_OR_FOLDER]   # a web page (pip install -e ".[web]")
    defusion restore in.png -o out.png --model DIR --instruction auto --compare cmp.png
    defusion restore photos/ more/*.jpg -o restored/ --skip-existing   # many images, one model load
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
    from .weights import DEFAULT_MODEL

    shipped = [n for n in available() if n.startswith("defusion-")]
    if not shipped:
        raise FileNotFoundError("no Defusion model is shipped with this install (defusion.weights.available() is empty)")
    return DEFAULT_MODEL if DEFAULT_MODEL in shipped else shipped[0]


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
    from .eval import PRESETS, discover_paired_sets, evaluate, load_plugin, method_names

    for plugin in args.plugin:
        load_plugin(plugin)
    if args.list:
        from .weights import DEFAULT_MODEL, available

        print("methods: " + ", ".join(method_names()))
        print(f"shipped models: {', '.join(available())}, default (= {DEFAULT_MODEL}); any saved pipeline folder; "
              "NAME:instructed for a pipeline told each task's degradations, NAME:bf16 for bfloat16 arithmetic")
        for k, v in PRESETS.items():
            print(f"preset {k}: {','.join(v)}")
        if Path(args.data_root).is_dir():
            paired = discover_paired_sets(args.data_root)
            print(f"paired sets in {args.data_root} (SET:paired): {', '.join(paired) or 'none'}")
        return 0
    methods = [m.strip() for m in (args.compare or "").split(",") if m.strip()] or ([args.method] if args.method else [])
    if args.method and args.compare:
        print("defusion eval: give --method or --compare, not both", file=sys.stderr)
        return 2
    if not methods or not args.tasks:
        print("defusion eval: --method (or --compare A,B,...) and --tasks are required (or --list)", file=sys.stderr)
        return 2
    if len(set(methods)) != len(methods):
        raise ValueError(f"--compare names a method twice: {args.compare}")
    from .eval import load_method, markdown_table

    loaded = {m: load_method(m) for m in methods}  # an unknown name fails before anything runs
    results = {}
    for m, fn in loaded.items():
        out = None
        if args.out:
            out = Path(args.out) / Path(m).name if len(methods) > 1 else Path(args.out)
        result = evaluate(fn, args.tasks, args.data_root, out_dir=out, limit=args.limit, lpips=not args.no_lpips,
                          method_name=m)  # fmt: skip
        if not result["tasks"]:
            reasons = "; ".join(f"{k}: {v}" for k, v in result["skipped"].items())
            print(f"defusion eval: no task ran, nothing written (--data-root {args.data_root}): {reasons}", file=sys.stderr)
            return 1
        results[result["method"]] = result
    table = markdown_table(results)
    print(table, end="")
    if args.out:
        if len(methods) > 1:
            (Path(args.out) / "compare.md").write_text(table)
            print(f"wrote {args.out}/compare.md and one folder per method (summary.json, summary.md, per_image.csv, gallery/)")
        else:
            print(f"wrote {args.out}/summary.json, summary.md, per_image.csv, gallery/")
    return 0


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _restore_inputs(patterns: list[str]) -> list[Path]:
    """Image files named by ``patterns``: files, folders (their images, sorted) and globs, in order, each once."""
    import glob

    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            hits = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not hits:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        elif path.is_file():
            hits = [path]
        elif glob.has_magic(pattern):
            hits = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not hits:
                raise FileNotFoundError(f"no image files match {pattern}")
        else:
            raise FileNotFoundError(f"no image file or folder at {pattern}")
        found += [p for p in hits if p.resolve() not in {q.resolve() for q in found}]
    return found


def _restore_targets(inputs: list[Path], output: str, compare: str | None) -> list[tuple[Path, Path, Path | None]]:
    """(input, output, comparison) per image. One input: ``output`` is a file unless it is an existing folder or
    ends with a slash; several: ``output`` is a folder of ``STEM.png`` files (``compare`` then a folder too)."""
    single, out = len(inputs) == 1, Path(output)
    suffix = out.suffix.lower()
    if suffix and suffix not in IMAGE_SUFFIXES and not out.is_dir():
        raise ValueError(f"-o {output}: an output image must end with one of {', '.join(IMAGE_SUFFIXES)}")
    as_file = bool(suffix) and not out.is_dir() and not output.endswith(("/", os.sep))
    if as_file and not single:
        raise ValueError(f"{len(inputs)} images need an output folder, not the file name {output}")
    targets = []
    for src in inputs:
        dst = out if as_file else out / f"{src.stem}.png"
        cmp = None
        if compare:
            cmp = Path(compare) if single and Path(compare).suffix.lower() in IMAGE_SUFFIXES else Path(compare) / f"{src.stem}.png"
        targets.append((src, dst, cmp))
    outs = [t[1].resolve() for t in targets] + [t[2].resolve() for t in targets if t[2] is not None]
    if len(set(outs)) != len(outs):
        clash = sorted({p.name for p in outs if outs.count(p) > 1})
        raise ValueError(f"several inputs would be written to the same file ({', '.join(clash)}): restore them "
                         "in separate calls or rename them")  # fmt: skip
    if {p.resolve() for p in inputs} & set(outs):
        raise ValueError("an output would overwrite its input; choose another -o")
    return targets


class _RestoreJob:
    """One loaded model restoring images for ``defusion restore``: a DefusionPipeline (told, blind or no
    instruction) or a RestorerPipeline (told or blind degradation)."""

    def __init__(self, args):
        import torch

        from .pipelines import DefusionPipeline, RestorerPipeline, pipeline_class
        from .weights import resolve

        folder = resolve(args.model)
        self.regression = pipeline_class(folder) is RestorerPipeline
        self.args = args
        self.told = None if args.instruction.lower() == "none" else args.instruction
        self.blind = isinstance(self.told, str) and self.told.lower() == "auto"
        if self.regression and args.self_ensemble not in (None, 1):
            raise ValueError("--self-ensemble is a Defusion option; a RestorerPipeline runs one pass")
        if self.regression and args.sampler is not None:
            raise ValueError("--sampler is a Defusion option; a RestorerPipeline runs one pass")
        cls = RestorerPipeline if self.regression else DefusionPipeline
        self.pipe = cls.from_pretrained(folder, dtype=torch.float32).set_precision(args.precision)
        if args.sampler is not None:
            from .diffusion import make_sampler

            self.pipe.scheduler = make_sampler(args.sampler, self.pipe.scheduler)
        # what would fail on every image fails once, before any image is read
        if self.blind and self.pipe.identifier is None:
            raise ValueError(f"--instruction auto needs a degradation identifier; {args.model} has none (name the "
                             "degradations, e.g. --instruction rain)")  # fmt: skip
        if self.regression and self.told is None and self.pipe.needs_prompt:
            raise ValueError(f"{type(self.pipe.restorer).__name__} needs --instruction (names like rain, or auto)")
        if not self.regression:
            if args.steps is not None and args.steps < 1:
                raise ValueError(f"--steps must be a positive number of DDIM steps, got {args.steps}")
            self.pipe.num_evaluations(64, 64, None if self.blind else self.told, args.steps, args.self_ensemble,
                                      tile_size=args.tile, tile_overlap=args.tile_overlap)  # checks the rest
        else:
            self.pipe.num_evaluations(64, 64, tile_size=args.tile, tile_overlap=args.tile_overlap)

    def plan(self, img: np.ndarray):
        """(instruction to restore with, what the identifier found or None, model evaluations it will take)."""
        a = self.args
        h, w = img.shape[:2]
        if self.regression:
            return self.told, None, self.pipe.num_evaluations(h, w, tile_size=a.tile, tile_overlap=a.tile_overlap)
        found, inst = self.pipe.identify(img, seed=a.seed) if self.blind else (None, self.told)
        n = self.pipe.num_evaluations(h, w, inst, a.steps, a.self_ensemble, tile_size=a.tile, tile_overlap=a.tile_overlap)
        return inst, found, n

    def restore(self, img: np.ndarray, inst):
        """(restored image, label of what it was restored for, the instruction image or None)."""
        import torch

        a = self.args
        if self.regression:
            out = self.pipe(img, degradation=inst, output_type="np", tile_size=a.tile, tile_overlap=a.tile_overlap)
            return out.images[0], out.degradations[0], None
        out = self.pipe(img, instruction=inst, num_inference_steps=a.steps, generator=torch.Generator().manual_seed(a.seed),
                        output_type="np", tile_size=a.tile, tile_overlap=a.tile_overlap, instruction_seed=a.seed,
                        self_ensemble=a.self_ensemble)  # fmt: skip
        vi = self.pipe.make_instruction(inst, seed=a.seed)
        return out.images[0], out.instructions[0], vi.image if vi is not None else None


def _compact(img: np.ndarray) -> np.ndarray:
    """An 8-bit image's pixels as uint8 (a quarter of the float copy's memory; the pipelines take either), other
    images as they are."""
    u8 = np.empty(img.shape, np.uint8)
    for r in range(0, img.shape[0], 256):  # in strips: no full-size float temporaries
        strip = img[r : r + 256]
        u8[r : r + 256] = np.round(strip * 255)
        if not np.array_equal(u8[r : r + 256].astype(np.float32) / 255.0, strip):
            return img  # 16-bit or otherwise not 8-bit: keep the floats
    return u8


def _restore(args) -> int:
    """``defusion restore``: files, folders and globs, one model load, one progress bar over images and tiles."""
    import time

    from tqdm.auto import tqdm

    from .images import load_image, make_grid, save_image, save_png, to_float_image

    if args.tile is not None and args.tile < 0:
        raise ValueError(f"--tile must be 0 (no tiling) or a positive multiple of the model's downsampling, got {args.tile}")
    args.tile = args.tile or None
    targets = _restore_targets(_restore_inputs(args.inputs), args.output, args.compare)
    job = _RestoreJob(args)
    todo = [t for t in targets if not (args.skip_existing and t[1].exists())]
    say = (lambda line: None) if args.quiet else tqdm.write
    for src, dst, _ in targets:
        if (src, dst, _) not in todo:
            say(f"{src.name}: skipped, {dst} exists")
    # plan first (blind identification decides the views), so the one bar's total is right
    plans, failed = {}, 0
    for src, dst, cmp in todo:
        try:
            img = load_image(src)
            plans[src] = job.plan(img)
        except (ValueError, OSError) as e:
            failed += 1
            print(f"defusion restore: {src}: error: {' '.join(str(e).split())[:300]}", file=sys.stderr)
    img = None  # not held while the first image restores
    total = sum(p[2] for p in plans.values())
    unit = "tile" if job.regression else "evaluation"
    with tqdm(total=total, unit=unit, disable=args.quiet or not plans, desc=f"{len(plans)} image(s)") as bar:
        with job.pipe.report_progress(bar):
            for k, (src, dst, cmp) in enumerate(t for t in todo if t[0] in plans):
                inst, found, n = plans[src]
                start, t0 = bar.n, time.perf_counter()
                img = _compact(load_image(src))
                restored, label, ground = job.restore(img, inst)
                dst.parent.mkdir(parents=True, exist_ok=True)
                save_image(restored, dst)
                bar.n = start + n  # exact even where a call counts differently
                bar.refresh()
                if cmp is not None:
                    img = to_float_image(img)
                    panel = ground if ground is not None else np.full((64, 64, 3), 0.5, np.float32)
                    what = "restored for" if job.regression else "instruction"
                    grid = make_grid([img, panel, restored], ["input", f"{what}: {label}", "restored"],
                                     tile_height=min(512, img.shape[0]))  # fmt: skip
                    cmp.parent.mkdir(parents=True, exist_ok=True)
                    save_png(grid, cmp)
                seen = ""
                if job.blind:
                    seen = ", ".join(f"{d[0]} {d[1]:.2f}" for d in found) if found else "nothing"
                    seen = " (detected)" if job.regression else f" (detected: {seen})"
                what = "degradation" if job.regression else "instruction"
                say(f"[{k + 1}/{len(plans)}] {src.name} {img.shape[1]}x{img.shape[0]}: {what}: {label}{seen}, "
                    f"{time.perf_counter() - t0:.1f} s -> {dst}" + (f", compare {cmp}" if cmp else ""))  # fmt: skip
    return 1 if failed else 0


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
    pe.add_argument("--method", help="identity, nlm, bm3d, dcp, unsharp, wiener (see --list), default (the shipped "
                    "default model, blind), a shipped model or a pipeline folder; NAME:instructed tells a pipeline "
                    "each task's degradations, NAME:bf16 runs it in bfloat16 (default: float32)")
    pe.add_argument("--compare", default=None, metavar="A,B,...",
                    help="several methods side by side (instead of --method): one table; --out gets a folder each")
    pe.add_argument("--tasks", help="comma-separated SET:degradation names (SET:paired for a real paired set) and/or presets "
                    "(aio3, aio5, real, defusion8, mixed6, noise, jpeg; aio3-synth, aio5-synth: synthetic stand-ins)")
    pe.add_argument("--data-root", default=os.environ.get("DEFUSION_DATA", "data"),
                    help="folder holding SET/gt (and SET/lq) folders, e.g. CBSD68/gt/*.png (default: $DEFUSION_DATA, else ./data)")
    pe.add_argument("--out", default=None, help="output folder for CSV, JSON, markdown and galleries")
    pe.add_argument("--limit", type=int, default=None, help="first N images of each set (sorted by name)")
    pe.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    pe.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                    help="register more methods from a file or module with a register() function, e.g. "
                    "benchmarks/anchors.py for FFDNet (repeatable)")
    pe.add_argument("--list", action="store_true", help="print methods, presets and the data root's paired sets")
    pe.set_defaults(fn=_eval)

    pr = sub.add_parser("restore", help="restore images (files, folders, globs) with a shipped model or a saved pipeline")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or globs ('photos/*.jpg')")
    pr.add_argument("-o", "--output", required=True,
                    help="output image (one input) or folder (several inputs: FOLDER/STEM.png)")
    pr.add_argument("--model", default="default",
                    help="default (the shipped default, defusion-small), a shipped model (defusion-small, dfpir-small) or a saved "
                         "DefusionPipeline / RestorerPipeline folder")
    pr.add_argument("--instruction", default="auto", help="auto (blind), none, or names like rain+noise")
    pr.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's, see its card)")
    pr.add_argument("--sampler", default=None, help="replace the model's sampler (ddim: DDIM at trailing timesteps) "
                    "by ddim-leading, dpm++, unipc or euler, with the same noise schedule")
    pr.add_argument("--tile", type=int, default=512, help="restore larger images in overlapping tiles of this size "
                    "(memory is bounded by it); 0: no tiling")
    pr.add_argument("--tile-overlap", type=int, default=32, help="pixels shared by neighbouring tiles (default 32)")
    pr.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="arithmetic of the restoring network: auto (default) uses bfloat16 where the processor "
                         "computes it natively (AMX or AVX512-BF16 CPUs, recent GPUs) and the model keeps its quality "
                         "in it (Defusion models: 1.7 times as fast, PSNR within 0.03 dB), float32 elsewhere")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--self-ensemble", nargs="?", type=int, const=8, default=None, metavar="N",
                    help="average N (1, 2, 4, 8, 16 or 32; alone: 8) restorations of rotated/flipped/shifted copies: "
                         "N times slower, better (default: the model's, see its card)")
    pr.add_argument("--compare", default=None, metavar="PNG",
                    help="also write input | instruction | output (several inputs: a folder of them)")
    pr.add_argument("--skip-existing", action="store_true", help="leave images whose output exists alone")
    pr.add_argument("--quiet", action="store_true", help="no progress bar and no per-image lines (errors still)")
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
    ps.add_argument("--model", default=None, help="the page's default model: shipped name or folder (default: the shipped default)")
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
    from .weights import DEFAULT_MODEL, resolve

    if not 0 < args.port < 65536 or args.max_megapixels <= 0:
        raise ValueError("--port must be 1-65535 and --max-megapixels > 0")
    args.model = DEFAULT_MODEL if args.model in (None, "default") else args.model
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
