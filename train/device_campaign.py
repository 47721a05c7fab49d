#!/usr/bin/env python
"""One call on a lent GPU: probe the training speed, train the shipped default further until a deadline, and
bring its weights back. train/configs/README.md says how a session runs it; in short:

    # here, before the call (CPU): the data pack, the instruction bank, the slim diffusers wheel, the size check
    python train/device_campaign.py prepare --data-root ../shared/data --wheel path/to/diffusers-0.42.1-py3-none-any.whl
    # the call (device tool), carrying .whl and data_pack:
    python3 train/device_campaign.py run --minutes 8.5 --out "$OUT"
    # here, after it: rebuild the pipeline folder from the returned pieces and evaluate it
    python train/device_campaign.py restore --from /work/.device/.../files --to runs/campaign/pipeline

``pack`` cuts any folder into such pieces (``restore --name`` joins them again): the restorers ranking uses it to
bring a run folder back (train/configs/README.md).

``run`` (inside ``--minutes`` from its start, everything written to ``--out`` as it goes):

1. installs nothing itself (the command line installs the carried wheel first) and records the GPU and versions;
2. probes for about a minute and a half: ``benchmarks/train_throughput.py`` eager (with the ``torch.profiler``
   table) and with ``torch.compile`` + channels-last, each in its own process under a time limit;
3. trains ``train/train_defusion.py --data_on_device`` from the shipped weights with the faster setting until the
   deadline less a minute (the cosine schedule sized from the probe's rate), EMA weights, bf16;
4. stores the trained pipeline in fp16 (``train/export_pipeline.py --storage fp16``) as a tar cut into pieces of
   15 MiB (a call returns at most 8 files of 16 MiB), with ``campaign.json`` (what ran, rates, steps, losses, the
   validation PSNR) and the training history.

``--device cpu --pretrained none --preset tiny`` runs the same steps on a CPU in a few minutes (the dry run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIECE = 15 * 2**20
TRAVEL_LIMIT = 64 * 2**20

# the training mixture of the shipped default's latest stage (train/configs/defusion_small_stage7_cpu.sh), on the GPU
MIXTURE = ["--kinds", "blur,defocus,haze,jpeg,low_light,motion_blur,noise,poisson,rain,raindrop,resize,snow,underwater",
           "--kind_weights", "noise=30,jpeg=12,rain=2,haze=2,low_light=2", "--severity", "jpeg=0.6:1",
           "--max_mix", "2", "--p_single", "0.75", "--p_mismatch", "0.25", "--instruction_bank", "1024",
           "--prediction_type", "sample", "--timestep_sampling", "inference", "--p_first_step", "0.5"]  # fmt: skip


def log(msg: str) -> None:
    print(f"[campaign {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_limited(cmd: list[str], limit: float, log_file: Path) -> tuple[int | None, str]:
    """Run ``cmd`` with its output in ``log_file``; past ``limit`` seconds kill it and every process it started
    (torch.compile's workers too). Returns (return code or None when killed, the output's tail)."""
    with open(log_file, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, limit))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of a finished run
            except ProcessLookupError:
                pass
    text = log_file.read_text(errors="replace")
    return code, text


def git_size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


# ---------------------------------------------------------------------------------------------------- prepare
def prepare(a) -> dict:
    """Data pack, instruction bank and slim wheel in ignored folders, then the size of what will travel."""
    sys.path.insert(0, str(ROOT / "train"))
    import torch
    from train_defusion import make_instruction_bank, parse_args

    from defusion.pipelines import DefusionPipeline

    pack = ROOT / a.pack
    if not (pack / "MANIFEST.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "train" / "pack_data.py"), "--data-root", a.data_root, "--out", str(pack),
                        "--max-mib", str(a.pack_mib)], check=True)  # fmt: skip
    bank_dir = pack / "instruction_bank"
    if not (bank_dir / "specs.json").is_file():
        args = parse_args(["--clean_dirs", str(pack), "--pretrained", "defusion-small", *MIXTURE])
        tok = DefusionPipeline.from_pretrained("defusion-small", dtype=torch.float32).degradation_tokenizer.eval()
        make_instruction_bank(args, tok).save(bank_dir)  # what the run's train_defusion.py would build
    if a.wheel:
        mods = ROOT / ".whl" / "diffusers_modules.json"
        record = ("import json, sys, diffusers, defusion.pipelines, defusion.data, diffusers.training_utils; "
                  "sys.path.insert(0, 'train'); import train_defusion, train_restorer, export_pipeline; "
                  "json.dump(sorted(m for m in sys.modules if m.split('.')[0] == 'diffusers'), open(sys.argv[1], 'w'))")  # fmt: skip
        (ROOT / ".whl").mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-c", record, str(mods)], check=True, cwd=ROOT)
        subprocess.run([sys.executable, str(ROOT / "train" / "slim_wheel.py"), a.wheel, "--modules", str(mods), "--out",
                        str(ROOT / ".whl")], check=True)  # fmt: skip
        mods.unlink()
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    untracked = subprocess.run(["git", "ls-files", "-z", "-o", "--exclude-standard"], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split("\0")  # fmt: skip
    sizes = {"tracked": git_size(ROOT / f for f in tracked if f), "untracked": git_size(ROOT / f for f in untracked if f),
             "data_pack": git_size(pack.rglob("*")), "wheels": git_size((ROOT / ".whl").glob("*.whl"))}  # fmt: skip
    sizes["total"] = sum(sizes.values())
    report = {k: f"{v / 2**20:.1f} MiB" for k, v in sizes.items()} | {"fits": sizes["total"] <= TRAVEL_LIMIT}
    print(json.dumps(report))
    if not report["fits"]:
        raise SystemExit("what travels is over 64 MiB: make --pack-mib smaller")
    return report


# ---------------------------------------------------------------------------------------------------- run
def history_summary(history: list[dict]) -> dict:
    """First and last losses and the last validation of a ``train_history.jsonl`` (its rows are either a step's
    loss or a validation)."""
    losses = [r["loss"] for r in history if r.get("loss") is not None]
    val = next((r for r in reversed(history) if "val_psnr" in r), {})
    return {"first_loss": losses[0] if losses else None, "last_losses": losses[-4:],
            "val_psnr": val.get("val_psnr"), "val_psnr_input": val.get("val_psnr_input")}  # fmt: skip


def run(a) -> dict:
    t0 = time.time()
    deadline = t0 + 60 * a.minutes
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    summary: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "minutes": a.minutes, "batch": a.batch, "crop": a.crop}

    def save():
        summary["elapsed_s"] = round(time.time() - t0, 1)
        (out / "campaign.json").write_text(json.dumps(summary, indent=1))

    import torch

    summary["torch"] = torch.__version__
    summary["gpu"] = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    pack = ROOT / a.pack
    clean = [str(d) for d in sorted(pack.iterdir()) if d.is_dir() and d.name != "instruction_bank"]
    model = ["--pretrained", a.pretrained] if a.pretrained != "none" else ["--preset", a.preset]
    log(f"{summary['gpu']}, torch {torch.__version__}, clean folders {clean}")
    save()

    # probe: eager (with the profile) and compiled, each in its own process and time limit
    probes = []
    throughput = out / f"train_throughput_{a.device}.json"
    variants = [("eager", ["--profile"], a.probe_seconds + 90), ("compiled", ["--compile", "--channels_last"], a.probe_seconds + a.compile_seconds)]
    for name, flags, limit in variants:
        if time.time() + limit > deadline - 60 * a.min_train_minutes:
            log(f"probe {name}: skipped, no time left")
            continue
        cmd = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--device", a.device, "--batch", str(a.batch),
               "--crop", str(a.crop), "--seconds", str(a.probe_seconds), "--clean_dir", clean[0], "--bank_dir",
               str(pack / "instruction_bank"), "--out", str(throughput), *flags]  # fmt: skip
        cmd += ["--pretrained", a.pretrained] if a.pretrained != "none" else ["--preset", a.preset]
        ts = time.time()
        code, text = run_limited(cmd, limit, work / f"probe_{name}.log")
        print(text[-6000:], flush=True)
        row = None
        if code == 0:
            try:
                row = json.loads(text.strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                pass
        else:
            log(f"probe {name}: {'killed at its time limit' if code is None else f'exit code {code}'}")
        probes.append({"name": name, "seconds": round(time.time() - ts, 1), "samples_per_s": row and row["samples_per_s"],
                       "tflops": row and row["tflops"], "breakdown_ms": row and row["breakdown_ms_per_step_synced"],
                       "warmup_s": row and row["warmup_s"]})  # fmt: skip
        log(f"probe {name}: {probes[-1]}")
        summary["probes"] = probes
        save()
    # the setting that gets through the most samples before the deadline, its compilation (warm-up) counted again
    left = deadline - time.time() - a.reserve_seconds
    ok = [p for p in probes if p["samples_per_s"]]
    best = max(ok, key=lambda p: p["samples_per_s"] * max(0.0, left - p["warmup_s"])) if ok else {"name": "eager", "samples_per_s": None}
    summary["chosen"] = best["name"]

    # train until the deadline, less the export
    run_dir = work / "run"
    (run_dir / "instruction_bank").mkdir(parents=True, exist_ok=True)
    for f in (pack / "instruction_bank").iterdir():
        shutil.copy(f, run_dir / "instruction_bank" / f.name)
    train_s = deadline - time.time() - a.reserve_seconds
    rate = best["samples_per_s"] or 1500.0  # no probe: about what one H200 does eager (train_throughput_cuda.json)
    steps = max(50, int(0.95 * rate * train_s / a.batch))  # the cosine schedule ends about at the deadline
    cmd = [sys.executable, str(ROOT / "train" / "train_defusion.py"), *model, "--output_dir", str(run_dir),
           "--clean_dirs", *clean, "--val_holdout", "8", "--resolution", str(a.crop), "--train_batch_size", str(a.batch),
           *MIXTURE, "--data_on_device", "--use_ema", "--ema_decay", str(a.ema_decay),
           "--learning_rate", str(a.lr), "--lr_warmup_steps", str(min(100, steps // 10)), "--min_learning_rate", "1e-5",
           "--max_train_steps", str(steps), "--max_train_minutes", f"{train_s / 60:.3f}", "--log_every", "25",
           "--checkpointing_steps", "1000000", "--checkpoints_total_limit", "1", "--validation_steps", "0",
           "--report_to", "none", "--seed", str(a.seed)]  # fmt: skip
    if a.device == "cuda":
        cmd += ["--mixed_precision", "bf16", "--allow_tf32"]
    else:
        cmd += ["--cpu", "--mixed_precision", "auto"]  # bf16 where the CPU computes it (as the probe did)
    if best["name"] == "compiled":
        cmd += ["--compile", "--channels_last"]
    summary["train_command"] = " ".join(cmd[1:])
    log(f"training {steps} steps at most, {train_s:.0f} s: {summary['train_command']}")
    save()
    ts = time.time()
    code, text = run_limited(cmd, deadline - time.time() - 20, work / "train.log")
    print(text[-8000:], flush=True)
    if code != 0 and "--compile" in cmd and time.time() - ts < 120:  # compiled training broke early: once more, eager
        log("compiled training failed; retrying eager")
        summary["chosen"] = "eager (compiled training failed)"
        cmd = [c for c in cmd if c not in ("--compile", "--channels_last")]
        i = cmd.index("--max_train_minutes")
        cmd[i + 1] = f"{(deadline - time.time() - a.reserve_seconds) / 60:.3f}"
        shutil.rmtree(run_dir / "pipeline", ignore_errors=True)
        code, text = run_limited(cmd, deadline - time.time() - 20, work / "train.log")
        print(text[-8000:], flush=True)
    history = [json.loads(line) for line in (run_dir / "train_history.jsonl").read_text().splitlines()] if (run_dir / "train_history.jsonl").is_file() else []
    done = history[-1]["step"] if history else 0
    summary["train"] = {"returncode": code, "seconds": round(time.time() - ts, 1), "steps": done,
                        "samples": done * a.batch, "samples_per_s_incl_setup": round(done * a.batch / (time.time() - ts), 1),
                        **history_summary(history)}  # fmt: skip
    if (run_dir / "train_history.jsonl").is_file():
        shutil.copy(run_dir / "train_history.jsonl", out / "train_history.jsonl")
    log(f"trained: {summary['train']}")
    save()

    # export in fp16 and cut into pieces that come back
    if (run_dir / "pipeline" / "model_index.json").is_file():
        export = work / "export"
        subprocess.run([sys.executable, str(ROOT / "train" / "export_pipeline.py"), "--pipeline", str(run_dir / "pipeline"),
                        "--out", str(export), "--storage", "fp16"], check=True)  # fmt: skip
        packed = pack_folder(export, out, "pipeline", work=work)
        summary["pieces"] = packed["pieces"]
        summary["pipeline_tar_bytes"] = packed["bytes"]
    save()
    log("done")
    return summary


# ---------------------------------------------------------------------------------------------------- pack, restore
def pack_folder(src, out, name: str, exclude=(), work=None, piece: int = PIECE) -> dict:
    """Tar ``src`` (as ``name/``, leaving out entries whose name matches a glob of ``exclude``) and cut the tar into
    ``out/NAME.tar.partNN`` of ``piece`` bytes at most: a device call returns at most 8 files of 16 MiB."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise SystemExit(f"{src} is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(work if work is not None else tempfile.gettempdir())
    tar = work / f"{name}.{os.getpid()}.tar"

    def keep(info):
        return None if any(Path(info.name).match(pattern) for pattern in exclude) else info

    with tarfile.open(tar, "w") as t:
        t.add(src, arcname=name, filter=keep)
    data = tar.read_bytes()
    tar.unlink()
    for old in out.glob(f"{name}.tar.part*"):  # pieces of an earlier pack would join into a broken tar
        old.unlink()
    pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
    for i, chunk in enumerate(pieces):
        (out / f"{name}.tar.part{i:02d}").write_bytes(chunk)
    return {"pieces": len(pieces), "bytes": len(data)}


def restore(a) -> None:
    """Join the returned pieces of ``--name`` and unpack its folder as ``--to``."""
    src, name = Path(getattr(a, "from")), a.name
    parts = sorted(src.glob(f"{name}.tar.part*"))
    if not parts:
        raise SystemExit(f"no {name}.tar.part* in {src}")
    dst = Path(a.to)
    tmp = dst.parent / (dst.name + ".tar")
    unpacked = dst.parent / (dst.name + ".unpacked")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp) as t:
        t.extractall(unpacked, filter="data")
    if not (unpacked / name).is_dir():
        shutil.rmtree(unpacked)
        tmp.unlink()
        raise SystemExit(f"the pieces in {src} do not hold a folder {name}/")
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(unpacked / name, dst)
    shutil.rmtree(unpacked)
    tmp.unlink()
    print(f"restored {dst}")


def pack(a) -> None:
    print(json.dumps(pack_folder(getattr(a, "from"), a.out, a.name or Path(getattr(a, "from")).name, a.exclude)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("--data-root", default="../shared/data")
    pp.add_argument("--pack", default="data_pack")
    pp.add_argument("--pack-mib", type=float, default=29.0)
    pp.add_argument("--wheel", default=None, help="the full diffusers wheel, to slim into .whl/")
    pr = sub.add_parser("run")
    pr.add_argument("--out", required=True)
    pr.add_argument("--work", default="/tmp/campaign")
    pr.add_argument("--minutes", type=float, default=8.5, help="everything, from the start of this command")
    pr.add_argument("--device", default="cuda")
    pr.add_argument("--pretrained", default="defusion-small", help="'none': a fresh --preset model (the CPU dry run)")
    pr.add_argument("--preset", default="small")
    pr.add_argument("--pack", default="data_pack")
    pr.add_argument("--batch", type=int, default=256)
    pr.add_argument("--crop", type=int, default=128)
    pr.add_argument("--lr", type=float, default=2e-4)
    pr.add_argument("--ema_decay", type=float, default=0.999)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--probe_seconds", type=float, default=12)
    pr.add_argument("--compile_seconds", type=float, default=180, help="the compiled probe's limit beyond --probe_seconds")
    pr.add_argument("--min_train_minutes", type=float, default=3.0, help="a probe that would leave less is skipped")
    pr.add_argument("--reserve_seconds", type=float, default=75, help="kept after training for saving and export")
    pk = sub.add_parser("pack", help="cut a folder into pieces that come back from a device call")
    pk.add_argument("--from", required=True)
    pk.add_argument("--out", required=True)
    pk.add_argument("--name", default=None, help="the folder's name in the pieces (default: its own)")
    pk.add_argument("--exclude", nargs="*", default=[], help="globs of entries to leave out, e.g. 'checkpoint-*'")
    rs = sub.add_parser("restore")
    rs.add_argument("--from", required=True)
    rs.add_argument("--to", required=True)
    rs.add_argument("--name", default="pipeline", help="which pieces: NAME.tar.part*")
    a = p.parse_args(argv)
    {"prepare": prepare, "run": run, "pack": pack, "restore": restore}[a.cmd](a)


if __name__ == "__main__":
    main()
