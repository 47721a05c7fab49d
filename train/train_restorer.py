#!/usr/bin/env python
"""Train a regression restorer (Restormer, PromptIR, DFPIR, Perceive-IR, ClearAIR) on the all-in-one mixture.

    accelerate launch train/train_restorer.py --model promptir --preset small \
        --clean_dirs ../shared/data/BSD400/gt --kinds noise,rain,haze --kind_repeats 3,1,1 \
        --output_dir runs/promptir-small

Data: clean folders degraded on the fly, one dataset per kind with its repeat factor (the papers' balancing,
e.g. noise x3), plus real pairs (``--paired DIR:DEGRADATION``). L1 loss on [-1, 1] images, gradient clipping,
optional EMA, checkpoints with ``save_pretrained`` (``restorer/``), ``--resume_from_checkpoint latest``,
validation PSNR per kind on held-out images (the last ``--val_holdout`` of the first folder). Optimiser defaults
follow each paper: PromptIR AdamW 2e-4 with linear warm-up and cosine; DFPIR Adam 1e-4 with cosine; Restormer
AdamW 3e-4 (wd 1e-4) with cosine. DFPIR gets each sample's degradation prompt code (``--clip_checkpoint`` for
CLIP, else the offline fallback). The final ``RestorerPipeline`` goes to ``output_dir/pipeline``.

Perceive-IR (AdamW 2e-4, wd 1e-4, cosine): L1 + 0.1 InfoNCE on the CFE code (anchor: the LQ crop; positive: a
second crop of the same degraded crop; negatives: other tasks in the batch) + 0.05 CLIP-aware loss (with
``--quality_prompts`` from ``train/train_quality_prompts.py``) + 0.1 difficulty-adaptive perceptual loss (with
``--vgg16``; ``--proxy_pipelines`` add hard negatives, weighted by the probe PSNR measured every
``--probe_every`` steps). DINOv2 features come from ``--dinov2`` (else a tiny random DINOv2, reported).
ClearAIR (AdamW 2e-4, wd 1e-4, cosine): L1 + 0.25 * 0.05 ICRM; quality and degradation conditions from the
identifier (``--identifier``), regions from SAM (``--sam``) or SLIC (cached in ``--region_cache``), content from
DINOv2. Missing optional parts are logged, never silently replaced.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from defusion import degradations as D
from defusion.data import MixtureDataset, PairedFolderDataset, SyntheticDegradationDataset, list_images
from defusion.losses import (ICRM_WEIGHT, DifficultyAdaptivePerceptualLoss, clip_aware_loss, difficulty_weights, icrm_loss,
                             info_nce_loss)  # fmt: skip
from defusion.perception import (Conditioner, DegradationIdentifier, DegradationPromptEncoder, QualityPerceiver,
                                 RegionMasks, SemanticEncoder, prompt_for)  # fmt: skip
from defusion.metrics import psnr
from defusion.pipelines import RESTORERS, RestorerPipeline
from defusion.training_utils import (
    TrainHistory,
    load_ema,
    loggable_config,
    require_batches,
    resolve_resume,
    save_checkpoint,
    save_ema,
    step_of,
    tensor_to_image,
    validation_means,
)

OPTIMISERS = {  # (optimiser, lr, weight decay, warm-up share of the steps)
    "promptir": ("adamw", 2e-4, 1e-2, 0.1),
    "dfpir": ("adam", 1e-4, 0.0, 0.0),
    "restormer": ("adamw", 3e-4, 1e-4, 0.0),
    "perceive_ir": ("adamw", 2e-4, 1e-4, 0.0),
    "clearair": ("adamw", 2e-4, 1e-4, 0.0),
}
LOSS_WEIGHTS = {"info_nce": 0.1, "clip": 0.05, "dpl": 0.1}  # Perceive-IR's lambda_1..3


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(RESTORERS))
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--pretrained_pipeline", default=None,
                   help="start from a saved RestorerPipeline (e.g. DFPIR's second stage: --resolution 192 --learning_rate 1e-5)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--clean_dirs", nargs="*", default=[])
    p.add_argument("--kinds", default="noise,rain,haze")
    p.add_argument("--kind_repeats", default=None, help="repeat factor per kind, e.g. 3,1,1 (default 1 each)")
    p.add_argument("--paired", nargs="*", default=[], help="DIR:DEGRADATION real pairs")
    p.add_argument("--paired_repeats", nargs="*", type=int, default=None)
    p.add_argument("--val_holdout", type=int, default=8)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--train_batch_size", type=int, default=8)
    p.add_argument("--max_train_steps", type=int, default=10000)
    p.add_argument("--max_train_minutes", type=float, default=None)
    p.add_argument("--learning_rate", type=float, default=None, help="default: the paper's for --model")
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--use_ema", action="store_true")
    p.add_argument("--ema_decay", type=float, default=0.999)
    p.add_argument("--clip_checkpoint", default=None, help="local open_clip ViT-B-32 weights for DFPIR prompts")
    p.add_argument("--dinov2", default=None, help="Dinov2Model folder or hub id (Perceive-IR, ClearAIR); else a tiny random one")
    p.add_argument("--identifier", default=None, help="trained DegradationIdentifier folder (ClearAIR's quality/degradation)")
    p.add_argument("--sam", default=None, help="SamModel + SamProcessor folder (ClearAIR regions); else SLIC")
    p.add_argument("--region_cache", default=None, help="folder caching region masks")
    p.add_argument("--quality_prompts", default=None, help="QualityPerceiver prompts folder (Perceive-IR's CLIP loss)")
    p.add_argument("--clip", default=None, help="the open_clip weights those prompts were learned on (None: the fallback)")
    p.add_argument("--vgg16", default=None, help="torchvision VGG16 state dict (Perceive-IR's perceptual loss)")
    p.add_argument("--proxy_pipelines", nargs="*", default=[], help="RestorerPipeline folders whose outputs are hard negatives")
    p.add_argument("--probe_every", type=int, default=500, help="steps between probe-PSNR updates (difficulty weights)")
    p.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--checkpointing_steps", type=int, default=1000)
    p.add_argument("--checkpoints_total_limit", type=int, default=2)
    p.add_argument("--resume_from_checkpoint", default=None)
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true")
    args = p.parse_args(input_args)
    if not (args.clean_dirs or args.paired):
        p.error("give training data: --clean_dirs and/or --paired")
    return args


def build_data(args):
    kinds = [D.get(k).name for k in args.kinds.split(",") if k.strip()]
    reps = [int(r) for r in args.kind_repeats.split(",")] if args.kind_repeats else [1] * len(kinds)
    if len(reps) != len(kinds):
        raise ValueError("--kind_repeats needs one factor per kind")
    common = dict(crop=args.resolution, seed=args.seed, instruction=False)
    datasets, repeats, val = [], [], {}
    for i, d in enumerate(args.clean_dirs):
        files = list_images(d)
        if i == 0 and args.val_holdout:
            files, held = files[: -args.val_holdout], files[-args.val_holdout :]
            val = {k: SyntheticDegradationDataset(held, [k], train=False, **{**common, "seed": args.seed + 99}) for k in kinds}
        for k, r in zip(kinds, reps):
            datasets.append(SyntheticDegradationDataset(files, [k], **common))
            repeats.append(r)
    for j, spec in enumerate(args.paired):
        path, _, deg = spec.rpartition(":")
        datasets.append(PairedFolderDataset(path, deg, **common))
        repeats.append(args.paired_repeats[j] if args.paired_repeats else 1)
    return MixtureDataset(datasets, repeats), val


@torch.no_grad()
def validate(model, val, prompts, device, conditioner=None) -> dict:
    model.eval()
    res = {}
    for kind, ds in val.items():
        scores = []
        for i in range(len(ds)):
            item = ds[i]
            x = item["lq"][None].to(device)
            kwargs = {"prompt_code": prompts([kind]).to(device)} if getattr(model, "needs_prompt", False) else {}
            if conditioner is not None:
                kwargs.update(conditioner(model, x))
            out = model(x, **kwargs).clamp(-1, 1)
            scores.append(psnr(tensor_to_image(out[0]), tensor_to_image(item["gt"]), crop_multiple=None))
        inp = [psnr(tensor_to_image(ds[i]["lq"]), tensor_to_image(ds[i]["gt"]), crop_multiple=None) for i in range(len(ds))]
        res.update(validation_means(inp, scores, suffix=f"/{kind}"))
    model.train()
    return res


def second_crop(x: torch.Tensor, gen: torch.Generator, share: float = 0.75) -> torch.Tensor:
    """A second random crop (``share`` of each side) of the same degraded crops: InfoNCE's positive."""
    h, w = x.shape[-2:]
    ch, cw = max(8, int(h * share)), max(8, int(w * share))
    top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
    return x[..., top : top + ch, left : left + cw]


def build_conditioner(args, model, device):
    """(Conditioner or None, aux dict): the frozen perception modules the model's ``conditions`` need, the
    optional Perceive-IR loss modules, and the components the saved pipeline keeps."""
    wanted = set(getattr(model, "conditions", ()))
    aux = {"components": {}, "proxies": [], "perceiver": None, "dpl": None}
    if not wanted:
        return None, aux
    semantic = identifier = regions = None
    if wanted & {"semantic", "content"}:
        semantic = SemanticEncoder.load(args.dinov2).to(device)
        logging.info("semantic encoder: %s", semantic.backend)
        aux["components"]["semantic_encoder"] = semantic.model
    if wanted & {"quality", "degradation"}:
        if args.identifier:
            identifier = DegradationIdentifier.from_pretrained(args.identifier)
        else:
            logging.warning("no --identifier: ClearAIR's quality/degradation conditions come from an UNTRAINED identifier")
            identifier = DegradationIdentifier.from_preset("tiny" if args.preset == "tiny" else "small")
        identifier = identifier.to(device).eval().requires_grad_(False)
        aux["components"]["identifier"] = identifier
        if "quality" in wanted:
            from defusion.perception.iqa import IQAEmbedding

            got, expected = IQAEmbedding(identifier).dim, model.config.quality_dim
            if got != expected:
                raise ValueError(f"--identifier gives a {got}-value quality embedding; {args.model} {args.preset} "
                                 f"expects {expected}: use an identifier of the matching size or another --preset")
    if "masks" in wanted:
        regions = RegionMasks.from_pretrained(args.sam, cache_dir=args.region_cache) if args.sam else RegionMasks(cache_dir=args.region_cache)
        logging.info("region masks: %s", regions.backend)
        if args.sam:
            aux["components"].update(region_model=regions.sam_model, region_processor=regions.sam_processor)
    if args.model == "perceive_ir":
        if args.quality_prompts:
            perceiver = QualityPerceiver.from_clip(args.clip, device=str(device)).load_prompts(args.quality_prompts)
            aux["perceiver"] = perceiver.eval().requires_grad_(False)
        else:
            logging.warning("no --quality_prompts: Perceive-IR's CLIP-aware loss is disabled")
        aux["dpl"] = DifficultyAdaptivePerceptualLoss.from_path(args.vgg16)
        if aux["dpl"] is not None:
            aux["dpl"] = aux["dpl"].to(device)
        for path in args.proxy_pipelines:
            pipe = RestorerPipeline.from_pretrained(path).to(device)
            pipe.set_progress_bar_config(disable=True)

            def proxy(images, pipe=pipe):
                return pipe(((images + 1) / 2).clamp(0, 1), degradation="auto" if pipe.needs_prompt else None, output_type="pt").images.to(images) * 2 - 1

            aux["proxies"].append(proxy)
    return Conditioner(semantic_encoder=semantic, identifier=identifier, region_masks=regions), aux


def main(args):
    out = Path(args.output_dir)
    acc = Accelerator(mixed_precision=args.mixed_precision, cpu=args.cpu,
                      project_config=ProjectConfiguration(project_dir=str(out)))  # fmt: skip
    logging.basicConfig(level=logging.INFO)
    set_seed(args.seed)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    if args.pretrained_pipeline:
        model = RestorerPipeline.from_pretrained(args.pretrained_pipeline, dtype=torch.float32).restorer
        if not isinstance(model, RESTORERS[args.model]):
            raise ValueError(f"{args.pretrained_pipeline} holds a {type(model).__name__}, not {args.model}")
    else:
        model = RESTORERS[args.model].from_preset(args.preset)
    encoder = DegradationPromptEncoder(args.clip_checkpoint, dim=getattr(model.config, "prompt_dim", 512))
    conditioner, aux = build_conditioner(args, model, acc.device)

    def prompts(labels):
        return encoder.encode([prompt_for("+".join(lab) if isinstance(lab, list) else lab) for lab in labels])

    params = [p for p in model.parameters() if p.requires_grad]  # DFPIR's prompt projection is frozen
    ema = EMAModel(params, decay=args.ema_decay) if args.use_ema else None

    def save_hook(models, weights, output_dir):
        if acc.is_main_process:
            acc.unwrap_model(models[0]).save_pretrained(os.path.join(output_dir, "restorer"))
            if ema is not None:
                save_ema(ema, os.path.join(output_dir, "ema"))
        while weights:
            weights.pop()

    def load_hook(models, input_dir):
        m = acc.unwrap_model(models.pop())
        m.load_state_dict(type(m).from_pretrained(input_dir, subfolder="restorer").state_dict())
        if ema is not None:
            load_ema(ema, os.path.join(input_dir, "ema"))
            ema.to(acc.device)

    acc.register_save_state_pre_hook(save_hook)
    acc.register_load_state_pre_hook(load_hook)

    kind, lr, wd, warm = OPTIMISERS[args.model]
    lr = args.learning_rate or lr
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd) if kind == "adamw" else torch.optim.Adam(params, lr=lr)
    with acc.main_process_first():
        train_ds, val = build_data(args)
    require_batches(train_ds, args.train_batch_size, acc.num_processes)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.dataloader_num_workers,
                                         generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    sched = get_scheduler("cosine", opt, num_warmup_steps=int(warm * args.max_train_steps),
                          num_training_steps=args.max_train_steps)  # fmt: skip
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    if ema is not None:
        ema.to(acc.device)
    step, epoch = 0, 0
    ckpt = resolve_resume(out, args.resume_from_checkpoint)
    if ckpt is not None:
        acc.load_state(str(ckpt))
        step = step_of(ckpt)
        epoch = step // max(1, len(loader))
    unwrapped = acc.unwrap_model(model)
    names = D.names()
    task_ids: dict[tuple, int] = {}
    probe_psnr, gen = float("inf"), torch.Generator().manual_seed(args.seed)
    deadline = time.time() + 60 * args.max_train_minutes if args.max_train_minutes else None
    bar = tqdm(total=args.max_train_steps, initial=step, disable=not acc.is_local_main_process, desc=args.model)
    history, done = TrainHistory(out / "train_history.jsonl"), step >= args.max_train_steps
    skip = step % max(1, len(loader))
    while not done:
        train_ds.set_epoch(epoch)
        for batch in (acc.skip_first_batches(loader, skip) if skip else loader):
            kwargs = {}
            if getattr(unwrapped, "needs_prompt", False):
                labels = [[names[j] for j in torch.nonzero(row).flatten().tolist()] for row in batch["labels"]]
                kwargs["prompt_code"] = prompts(labels).to(acc.device)
            if conditioner is not None:
                kwargs.update(conditioner(unwrapped, batch["lq"]))
            if aux.get("dpl") is not None and aux["proxies"] and step % args.probe_every == 0:
                probe_psnr = float(np.mean(list(validate(unwrapped, val, prompts, acc.device, conditioner).values())[::2]))
            with acc.autocast():
                extra = {}
                if args.model == "perceive_ir":
                    z = unwrapped.cfe(batch["lq"])
                    kwargs["z"] = z
                pred = model(batch["lq"], **kwargs)
                loss = F.l1_loss(pred.float(), batch["gt"].float())
                if args.model == "perceive_ir":
                    tasks = torch.tensor([task_ids.setdefault(tuple(torch.nonzero(r).flatten().tolist()), len(task_ids))
                                          for r in batch["labels"]], device=z.device)  # fmt: skip
                    extra["info_nce"] = info_nce_loss(z, unwrapped.cfe(second_crop(batch["lq"], gen)), tasks)
                    if aux.get("perceiver") is not None:
                        extra["clip"] = clip_aware_loss(aux["perceiver"], pred)
                    if aux.get("dpl") is not None:
                        with torch.no_grad():
                            proxies = [p(images=batch["lq"]) for p in aux["proxies"]]
                        weights = [difficulty_weights(p, batch["gt"], probe_psnr) for p in proxies]
                        extra["dpl"] = aux["dpl"](pred, batch["gt"], batch["lq"], proxies, weights)
                    loss = loss + sum(LOSS_WEIGHTS[k] * v for k, v in extra.items())
                elif args.model == "clearair":
                    extra["icrm"] = icrm_loss(pred.float(), gen)
                    loss = loss + ICRM_WEIGHT * extra["icrm"]
            acc.backward(loss)
            acc.clip_grad_norm_(params, args.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if ema is not None:
                ema.step(params)
            step += 1
            bar.update(1)
            history.append({"step": step, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0],
                            **{k: float(v.detach()) for k, v in extra.items()}})  # fmt: skip
            done = step >= args.max_train_steps or (deadline is not None and time.time() > deadline)
            if step % args.checkpointing_steps == 0 or done:
                save_checkpoint(acc, out, step, args.checkpoints_total_limit)
                if acc.is_main_process and not done:  # the last rows are written after the final validation
                    history.flush()
            if done:
                break
        skip = 0
        epoch += 1
    if acc.is_main_process:
        if ema is not None:
            ema.copy_to(params)
        if val:
            history[-1].update(validate(unwrapped, val, prompts, acc.device, conditioner))
        RestorerPipeline(restorer=unwrapped, **aux["components"]).save_pretrained(out / "pipeline")
        history.flush()
        (out / "run_config.json").write_text(json.dumps(loggable_config(args), indent=2))
    return history


if __name__ == "__main__":
    main(parse_args())
