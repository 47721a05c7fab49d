#!/usr/bin/env python
"""Assemble a shippable pipeline folder (a DefusionPipeline or a RestorerPipeline) from training outputs.

    python train/export_pipeline.py --pipeline runs/defusion-small/pipeline \
        --identifier runs/identifier/identifier --out defusion/weights/defusion-small [--check_images DIR]

Attaches the degradation identifier (blind mode), leaves the degradation tokenizer's decoder out (tokenizing needs
only its encoder), stores every weight in fp16 and, with ``--storage int8`` (the default), the large components'
convolution and linear weights as int8 per output channel (``defusion.models.compact``; a quarter of fp32).
It checks that the storage is lossless enough: the restored images of the fp32 and the stored pipeline (both
computed in fp32, blind) are compared on a few crops with sigma-25 noise added, and the PSNR between them is printed.

``--blend_with OTHER --blend T`` ships the weight interpolation (1 - T) * OTHER + T * PIPELINE of every component
both folders hold (the identifier excepted): a fine-tune blended with the model it started from keeps part of its
gain and part of what it lost (weight-space ensembling, "WiSE-FT", Wortsman et al. 2022).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from defusion import degradations as D
from defusion.images import load_image
from defusion.models.compact import compact_folder
from defusion.perception import DegradationIdentifier
from defusion.pipelines import RestorerPipeline, pipeline_class


# the large components, each with the layers kept in fp16: DFPIR's degradation-guided perturbation blocks scale
# features by the instruction code and amplify rounding (int8 there alone: 32 dB between outputs; elsewhere > 50 dB)
COMPACT_COMPONENTS = {"unet": (), "bridge": (), "degradation_tokenizer": (), "restorer": ("dgpb_",)}


def restore_all(pipe, images):
    auto = "auto" if pipe.identifier is not None else None
    if isinstance(pipe, RestorerPipeline):
        return [pipe(im, degradation=auto, output_type="np").images[0] for im in images]
    return [pipe(im, instruction=auto, output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
            for im in images]  # fmt: skip


def blend_pipelines(pipe, other, t: float) -> list[str]:
    """Set every module of ``pipe`` that ``other`` also holds to (1 - t) * other + t * pipe; returns their names.

    Parameters and buffers both modules hold are blended (a tokenizer folder without its decoder blends with one that
    has it); different shapes, or two folders sharing no weights, raise."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"--blend must be in [0, 1], got {t}")
    blended = []
    for name, mine in pipe.components.items():
        theirs = getattr(other, name, None)
        if name == "identifier" or not isinstance(mine, torch.nn.Module) or not isinstance(theirs, torch.nn.Module):
            continue
        a, b = mine.state_dict(), theirs.state_dict()
        common = [k for k in a if k in b]
        if not common:
            raise ValueError(f"{name}: the two pipelines share no weights; blend only folders of one architecture")
        for k in common:
            if a[k].shape != b[k].shape:
                raise ValueError(f"{name}.{k}: shape {tuple(a[k].shape)} against {tuple(b[k].shape)}")
            if a[k].is_floating_point():
                a[k].copy_(torch.lerp(b[k].to(a[k].dtype), a[k], t))
        blended.append(name)
    if not blended:
        raise ValueError("--blend_with holds none of the pipeline's components")
    return blended


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", required=True)
    p.add_argument("--identifier", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--storage", default="int8", choices=["int8", "fp16"], help="int8: compact large weights (see above)")
    p.add_argument("--check_images", default=None, help="folder of clean images for the fp16 check (first 4, 128 px crops, sigma-25 noise added)")
    p.add_argument("--blend_with", default=None, help="a pipeline folder of the same architecture (see above)")
    p.add_argument("--blend", type=float, default=None, help="T in [0, 1]: the weight of --pipeline (see above)")
    args = p.parse_args(argv)
    if (args.blend_with is None) != (args.blend is None):
        p.error("--blend_with and --blend go together")
    cls = pipeline_class(args.pipeline)
    pipe = cls.from_pretrained(args.pipeline, dtype=torch.float32)
    report = {}
    if args.blend_with:
        other = pipeline_class(args.blend_with).from_pretrained(args.blend_with, dtype=torch.float32)
        report["blend"] = {"with": str(args.blend_with), "t": args.blend,
                           "components": blend_pipelines(pipe, other, args.blend)}  # fmt: skip
    if args.identifier:
        pipe.register_modules(identifier=DegradationIdentifier.from_pretrained(args.identifier, dtype=torch.float32))
    pipe.set_progress_bar_config(disable=True)
    if args.check_images:
        files = sorted(Path(args.check_images).iterdir())[:4]
        noisy = D.parse("noise25")  # restore degraded crops: on clean ones blind mode may find nothing to do
        images = [noisy.apply(load_image(f)[:128, :128], np.random.default_rng(i)) for i, f in enumerate(files)]
        ref = restore_all(pipe, images)
    tokenizer = getattr(pipe, "degradation_tokenizer", None)
    if tokenizer is not None and tokenizer.config.with_decoder:
        pipe.register_modules(degradation_tokenizer=tokenizer.without_decoder())
    pipe.to(torch.float16).save_pretrained(args.out)
    if args.storage == "int8":
        for name, keep in COMPACT_COMPONENTS.items():
            if (Path(args.out) / name / "config.json").is_file():
                report[f"{name}_bytes"] = compact_folder(Path(args.out) / name, keep)
    if args.check_images:
        back = cls.from_pretrained(args.out, dtype=torch.float32)
        back.set_progress_bar_config(disable=True)
        got = restore_all(back, images)
        diffs = [float(-10 * np.log10(np.mean((a - b) ** 2) + 1e-12)) for a, b in zip(ref, got)]
        report |= {"stored_vs_fp32_psnr_db": diffs, "max_abs_diff": float(max(np.abs(a - b).max() for a, b in zip(ref, got)))}
        print(json.dumps(report))
    (Path(args.out) / "export_check.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
