"""Training throughput of Defusion on the device data path: samples/s, where a step's time goes, achieved TFLOP/s.

    python benchmarks/train_throughput.py --device cuda --preset small --batch 256 --crop 128 --seconds 30 \\
        [--pretrained defusion-small] [--compile] [--channels_last] [--clean_dir DIR] [--profile]
    python benchmarks/train_throughput.py --device cpu --preset tiny --batch 8 --crop 64 --seconds 10

The step is train/train_defusion.py's (``training_step`` on ``DeviceBatches``: clean images resident on the device,
a 13-kind bank mixture degraded there, 25 % non-matching instructions), with fused AdamW, bf16 autocast where the
device computes it natively (``--bf16``) and EMA, as a ``--data_on_device`` run does. Three measurements:

* **samples/s**: ``--seconds`` of back-to-back steps after a warm-up (compilation included there), one device
  sync at the end; the loss is read once at the end, as ``--log_every`` does;
* **breakdown**: 10 steps with a device sync after each phase (data, forward + backward, optimizer, EMA, reading the
  loss), so that the phases add up to a (slower) step;
* **TFLOP/s**: the floating-point operations of one forward + backward counted by ``torch.utils.flop_counter``
  (convolutions, matrix products, attention), per sample, times samples/s.

``--profile`` adds the ``torch.profiler`` table of 2 steps (top operators by device time, CPU time on CPU). Each
run writes its row into ``--out`` (default ``benchmarks/results/train_throughput_<device>.json``: rows keyed by
device name, preset, batch, crop and the compile / channels-last switches). Without ``--clean_dir`` the clean images
are synthetic (smooth random textures), which costs the same as photos.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "train"))

from diffusers.training_utils import EMAModel  # noqa: E402
from train_defusion import build_pipeline, instruction_tokens, parse_args, training_step  # noqa: E402

from defusion import degradations as D  # noqa: E402
from defusion.data import DeviceBatches, InstructionBank, ResidentImages, list_images  # noqa: E402
from defusion.diffusion import make_scheduler  # noqa: E402
from defusion.models import DefusionDenoiser  # noqa: E402
from defusion.pipelines.loading import native_bf16  # noqa: E402

KIND_WEIGHTS = {"noise": 8, "jpeg": 4, "rain": 2, "haze": 2, "low_light": 2}  # the shipped model's recent mixture


def synthetic_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random colour textures (uint8), for running without a data folder."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, size)
    out = []
    for _ in range(n):
        chans = [np.outer(np.sin(t * rng.uniform(2, 30) + rng.uniform(0, 6)), np.cos(t * rng.uniform(2, 30))) for _ in range(3)]
        img = 0.5 + 0.4 * np.stack(chans, -1) + 0.05 * rng.standard_normal((size, size, 3))
        out.append(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    return out


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--preset", default="small", choices=["tiny", "small"])
    p.add_argument("--pretrained", default=None, help="start from a shipped / saved pipeline (its size wins over --preset)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=int, default=5, help="steps before timing (compilation happens here)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--bf16", default="auto", choices=["auto", "on", "off"],
                   help="bf16 autocast; auto: where the device computes it natively (CUDA, AMX / AVX512-BF16 CPUs)")
    p.add_argument("--clean_dir", default=None)
    p.add_argument("--bank", type=int, default=256, help="instruction bank entries (tokenized once, before timing)")
    p.add_argument("--bank_dir", default=None, help="a saved InstructionBank folder to use instead")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse(argv)
    if a.preset == "small" and not a.pretrained:
        a.pretrained = "defusion-small"  # the shipped default is the small preset (and brings its trained tokenizer)
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    targs = parse_args(["--clean_dirs", str(ROOT), "--preset", a.preset, "--resolution", str(a.crop),
                        "--train_batch_size", str(a.batch), "--prediction_type", "sample",
                        "--timestep_sampling", "inference", "--p_first_step", "0.5", "--instruction_bank", str(a.bank),
                        "--p_mismatch", "0.25", "--data_on_device"] + (["--pretrained", a.pretrained] if a.pretrained else []))  # fmt: skip
    torch.manual_seed(0)
    pipe = build_pipeline(targs)
    tokenizer = pipe.degradation_tokenizer.float().requires_grad_(False).eval().to(device)
    denoiser = DefusionDenoiser(pipe.unet, pipe.bridge, pipe.adapter).to(device).train()
    if a.channels_last:
        denoiser.to(memory_format=torch.channels_last)
    forward = torch.compile(denoiser) if a.compile else denoiser
    scheduler = make_scheduler("sample")

    t0 = time.time()
    kinds = D.names()
    if a.bank_dir:
        bank = InstructionBank.load(a.bank_dir)
    else:
        bank = InstructionBank.build(tokenizer, a.bank, kinds, max_mix=2, p_single=0.75,
                                     weights=[KIND_WEIGHTS.get(k, 1) for k in kinds], severity={"jpeg": (0.5, 1.0)}, seed=0)  # fmt: skip
    if a.clean_dir:
        images = ResidentImages.from_files(list_images(a.clean_dir), device)
    else:
        images = ResidentImages(synthetic_images(64, max(2 * a.crop, 160)), device)
    data = DeviceBatches(images, bank, a.crop, a.batch, p_mismatch=0.25, seed=0)
    setup_s = time.time() - t0

    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=1e-4, weight_decay=1e-2, **({"fused": True} if cuda else {}))
    ema = EMAModel(denoiser.parameters(), decay=0.999, foreach=True)
    ema.to(device)
    bf16 = a.bf16 == "on" or (a.bf16 == "auto" and native_bf16(device))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step(i, phases=None):
        t = time.perf_counter()

        def mark(name):
            nonlocal t
            if phases is not None:
                sync()
                now = time.perf_counter()
                phases[name] = phases.get(name, 0.0) + now - t
                t = now

        batch = data.batch(i)
        if a.channels_last:
            batch.update({k: batch[k].contiguous(memory_format=torch.channels_last) for k in ("lq", "gt")})
        tokens = instruction_tokens(targs, batch, tokenizer, bank)
        mark("data")
        with autocast:
            loss = training_step(targs, forward, scheduler, batch, tokens)
        loss.backward()
        mark("forward_backward")
        torch.nn.utils.clip_grad_norm_(denoiser.parameters(), 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mark("optimizer")
        ema.step(denoiser.parameters())
        mark("ema")
        if phases is not None:
            float(loss.detach())
            mark("logging")
        return loss

    t0 = time.time()
    for i in range(a.warmup):
        step(i)
    sync()
    warmup_s = time.time() - t0

    losses, n, t0 = [], 0, time.time()
    while time.time() - t0 < a.seconds or n < 2:
        losses.append(step(a.warmup + n).detach())
        n += 1
    sync()
    elapsed = time.time() - t0
    final_loss = float(torch.stack(losses).mean())
    samples_per_s = n * a.batch / elapsed

    phases: dict = {}
    k = 10 if cuda else 2
    for i in range(k):
        step(10**6 + i, phases)
    breakdown_ms = {name: round(1000 * v / k, 2) for name, v in phases.items()}

    batch = data.batch(0)
    tokens = instruction_tokens(targs, batch, tokenizer, bank)

    def fwd_bwd():
        with autocast:
            loss = training_step(targs, denoiser, scheduler, batch, tokens)
        loss.backward()

    flops_per_sample = count_flops(fwd_bwd) / a.batch
    optimizer.zero_grad(set_to_none=True)

    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    row = {
        "device": name, "torch_device": str(device), "preset": a.preset if not a.pretrained else a.pretrained,
        "batch": a.batch, "crop": a.crop, "compile": a.compile, "channels_last": a.channels_last, "bf16": bf16,
        "params_m": round(sum(p.numel() for p in denoiser.parameters()) / 1e6, 3),
        "steps": n, "seconds": round(elapsed, 2), "samples_per_s": round(samples_per_s, 1),
        "gflop_per_sample": round(flops_per_sample / 1e9, 2), "tflops": round(flops_per_sample * samples_per_s / 1e12, 2),
        "breakdown_ms_per_step_synced": breakdown_ms, "setup_s": round(setup_s, 1), "warmup_s": round(warmup_s, 1),
        "mean_loss": round(final_loss, 5), "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"train_throughput_{'cuda' if cuda else 'cpu'}.json")

    def write(row):
        rows = json.loads(out.read_text()) if out.is_file() else []
        keys = ("device", "preset", "batch", "crop", "compile", "channels_last", "bf16")
        rows = [r for r in rows if tuple(r.get(x) for x in keys) != tuple(row[x] for x in keys)] + [row]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1) + "\n")

    write(row)  # before the profile, which can take long on a GPU
    if a.profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with torch_profile(activities=acts) as prof:
            for i in range(2):
                step(2 * 10**6 + i)
            sync()
        try:
            profile = prof.key_averages().table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=20)
        except (KeyError, AttributeError, ValueError):  # older torch names the device column after CUDA
            profile = prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=20)
        print(profile)
        row["profile_top"] = profile.splitlines()[:26]
        write(row)
    print(json.dumps({k: v for k, v in row.items() if k != "profile_top"}))
    return row


if __name__ == "__main__":
    main()
