"""train_defusion.py on CPU with the tiny preset: loss falls, resume works, DDP over gloo works."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "train"))
from train_defusion import build_datasets, inference_step_probs, main, parse_args, training_step  # noqa: E402


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory, photo):
    from defusion.images import save_image

    d = tmp_path_factory.mktemp("clean")
    for i in range(6):
        save_image(photo[i * 20 : i * 20 + 48, i * 30 : i * 30 + 48], d / f"{i}.png")
    return d


def base(clean_dir, out, steps, *extra):
    return ["--preset", "tiny", "--clean_dirs", str(clean_dir), "--resolution", "32", "--train_batch_size", "4",
            "--max_train_steps", str(steps), "--learning_rate", "2e-3", "--report_to", "none", "--output_dir", str(out),
            "--kinds", "noise", "--timestep_sampling", "inference", "--cpu", *extra]  # fmt: skip


def test_loss_falls_and_pipeline_is_saved(clean_dir, tmp_path):
    hist = main(parse_args(base(clean_dir, tmp_path, 40, "--val_holdout", "2", "--validation_steps", "40",
                                "--checkpointing_steps", "1000")))  # fmt: skip
    losses = [h["loss"] for h in hist]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), losses
    assert "val_psnr" in hist[-1] and (tmp_path / "validation" / "step_0000040.png").is_file()
    assert (tmp_path / "pipeline" / "model_index.json").is_file()
    from defusion import DefusionPipeline

    DefusionPipeline.from_pretrained(tmp_path / "pipeline")


def test_fine_tune_keeps_blind_settings(clean_dir, tmp_path):
    from defusion import DefusionPipeline

    main(parse_args(base(clean_dir, tmp_path / "a", 2, "--val_holdout", "0", "--checkpointing_steps", "1000")))
    start = DefusionPipeline.from_pretrained(tmp_path / "a" / "pipeline")
    start.register_to_config(noise_estimator="wavelet", noise_scale=0.8, default_steps=1, default_self_ensemble=4)
    start.save_pretrained(tmp_path / "start")
    main(parse_args(base(clean_dir, tmp_path / "b", 2, "--val_holdout", "0", "--checkpointing_steps", "1000",
                         "--pretrained_pipeline", str(tmp_path / "start"))))  # fmt: skip
    tuned = DefusionPipeline.from_pretrained(tmp_path / "b" / "pipeline")
    assert (tuned.config.noise_estimator, tuned.config.noise_scale) == ("wavelet", 0.8)
    assert (tuned.config.default_steps, tuned.config.default_self_ensemble) == (1, 4)


def test_psnr_loss_trains(clean_dir, tmp_path):
    hist = main(parse_args(base(clean_dir, tmp_path, 30, "--val_holdout", "0", "--checkpointing_steps", "1000",
                                "--loss", "psnr")))  # fmt: skip
    losses = [h["loss"] for h in hist]  # mean per-sample 10 log10(MSE): dB, falls as the fit improves
    assert all(np.isfinite(losses)) and np.mean(losses[-8:]) < np.mean(losses[:8]) - 1.0, losses
    with pytest.raises(SystemExit):
        parse_args(base(clean_dir, tmp_path, 3, "--loss", "psnr", "--loss_eps", "0"))


def test_bf16_autocast_on_cpu_trains(clean_dir, tmp_path, monkeypatch, caplog):
    import torch

    from accelerate.state import AcceleratorState

    import train_defusion
    from defusion import DefusionPipeline

    AcceleratorState._reset_state(reset_partial_state=True)  # the process-wide state holds the earlier runs' precision
    try:
        hist = main(parse_args(base(clean_dir, tmp_path, 30, "--val_holdout", "0", "--checkpointing_steps", "1000",
                                    "--mixed_precision", "bf16")))  # fmt: skip
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    losses = [h["loss"] for h in hist]
    assert all(np.isfinite(losses)) and np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), losses
    unet = DefusionPipeline.from_pretrained(tmp_path / "pipeline").unet
    assert all(p.dtype == torch.float32 for p in unet.parameters())  # autocast: the weights stay float32
    for native, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(train_defusion, "native_bf16", lambda device, native=native: native)
        assert train_defusion.resolve_mixed_precision("auto", cpu=True) == expected
        assert train_defusion.resolve_mixed_precision("no", cpu=True) == "no"
    with caplog.at_level("WARNING"):  # asked for on a CPU that only emulates bf16: kept, with a warning
        assert train_defusion.resolve_mixed_precision("bf16", cpu=True) == "bf16"
    assert "emulated" in caplog.text
    with pytest.raises(SystemExit):
        parse_args(base(clean_dir, tmp_path, 3, "--mixed_precision", "bf17"))


def test_resume_continues(clean_dir, tmp_path):
    straight = main(parse_args(base(clean_dir, tmp_path / "a", 6, "--val_holdout", "0", "--checkpointing_steps", "3",
                                    "--use_ema")))  # fmt: skip
    main(parse_args(base(clean_dir, tmp_path / "b", 3, "--val_holdout", "0", "--checkpointing_steps", "3", "--use_ema")))
    # the second half runs with the same schedule length as the straight run
    resumed = main(parse_args(base(clean_dir, tmp_path / "b", 6, "--val_holdout", "0", "--checkpointing_steps", "3",
                                   "--use_ema", "--resume_from_checkpoint", "latest")))  # fmt: skip
    assert [h["step"] for h in resumed] == [4, 5, 6]
    rows = (tmp_path / "b" / "train_history.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # each step once across the two runs
    assert (tmp_path / "b" / "checkpoint-6" / "ema" / "ema.safetensors").is_file()
    assert all(np.isfinite(h["loss"]) for h in resumed)
    assert json.loads((tmp_path / "b" / "run_config.json").read_text())["resume_from_checkpoint"] == "latest"
    assert len(straight) == 6


def test_ddp_two_cpu_processes(clean_dir, tmp_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train" / "train_defusion.py"),
           *base(clean_dir, tmp_path, 3, "--val_holdout", "0", "--checkpointing_steps", "3", "--train_batch_size", "2")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "checkpoint-3" / "unet").is_dir() and (tmp_path / "pipeline" / "unet").is_dir()


def test_bad_arguments(clean_dir, tmp_path):
    with pytest.raises(SystemExit):
        parse_args(["--preset", "tiny", "--output_dir", str(tmp_path)])  # no data
    with pytest.raises(SystemExit):
        parse_args(["--preset", "small", "--clean_dirs", str(clean_dir)])  # no tokenizer
    with pytest.raises(FileNotFoundError):
        main(parse_args(base(clean_dir, tmp_path, 1, "--val_holdout", "0", "--resume_from_checkpoint", "checkpoint-7")))


def test_text_instruction_ablation_trains(clean_dir, tmp_path, tiny_clip):
    hist = main(parse_args(base(clean_dir, tmp_path, 2, "--val_holdout", "2", "--validation_steps", "2",
                                "--checkpointing_steps", "2", "--instruction_mode", "text",
                                "--text_encoder", str(tiny_clip[0]), "--text_tokenizer", str(tiny_clip[1]))))  # fmt: skip
    assert len(hist) == 2 and "val_psnr" in hist[-1]
    from defusion import DefusionPipeline

    pipe = DefusionPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.text_encoder is not None and pipe.adapter.config.scale == 0.0


def test_hf_imagefolder_and_paired_sources(tmp_path, photo):
    from defusion.images import save_image

    for i in range(3):
        save_image(photo[:48, i * 40 : i * 40 + 48], tmp_path / "hf" / f"{i}.png")
        save_image(photo[:48, i * 40 : i * 40 + 48], tmp_path / "pairs" / "rainy" / f"rain-{i}.png")
        save_image(photo[:48, i * 40 : i * 40 + 48], tmp_path / "pairs" / "gt" / f"norain-{i}.png")
    args = parse_args(["--preset", "tiny", "--hf_imagefolder", str(tmp_path / "hf"), "--paired",
                       f"{tmp_path / 'pairs'}:rain", "--repeats", "1", "2", "--resolution", "32",
                       "--train_batch_size", "3", "--max_train_steps", "2", "--report_to", "none",
                       "--output_dir", str(tmp_path / "out"), "--val_holdout", "0", "--cpu"])  # fmt: skip
    train, val = build_datasets(args, instruction_size=64)
    assert len(train) == 3 + 2 * 3 and val is None  # repeats follow --paired, then --hf_imagefolder: 3 pairs, 2 x 3
    paired = [train[i] for i in range(3)]
    assert all(json.loads(item["spec"])["name"] == "rain" for item in paired)  # named by DIR:rain
    assert all(json.loads(train[i]["spec"])["name"] in ("noise", "rain", "haze") for i in range(3, 9))
    hist = main(args)
    assert [h["step"] for h in hist] == [1, 2] and all(np.isfinite(h["loss"]) for h in hist)
    assert (tmp_path / "out" / "pipeline" / "model_index.json").is_file()


def test_training_step_fits_a_fixed_batch(clean_dir, tmp_path):
    """The step the training loop takes, called directly: on one fixed batch the loss falls."""
    import torch

    from defusion import DefusionPipeline

    args = parse_args(base(clean_dir, tmp_path, 1, "--val_holdout", "0", "--instruction_dropout", "0"))
    train, _ = build_datasets(args, instruction_size=64)
    torch.manual_seed(0)
    pipe = DefusionPipeline.from_preset("tiny")
    batch = torch.utils.data.default_collate([train[i] for i in range(4)])
    tokens = pipe.degradation_tokenizer.tokenize(batch["instruction"], null=batch["null"]).detach()
    opt = torch.optim.Adam(pipe.denoiser.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        torch.manual_seed(len(losses))  # the same noise and timesteps each step: only the weights change
        loss = training_step(args, pipe.denoiser, pipe.scheduler, batch, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_fine_tune_a_shipped_style_model_on_a_train_dir(clean_dir, tmp_path, photo):
    """--pretrained + --train_dir + --degradation: clean images degraded by the spec, or real pairs."""
    from defusion import DefusionPipeline
    from defusion.images import save_image

    start = DefusionPipeline.from_preset("tiny")
    start.save_pretrained(tmp_path / "start")
    common = ["--pretrained", str(tmp_path / "start"), "--resolution", "32", "--train_batch_size", "2",
              "--max_train_steps", "2", "--report_to", "none", "--cpu", "--checkpointing_steps", "1000"]  # fmt: skip
    args = parse_args([*common, "--train_dir", str(clean_dir), "--degradation", "jpeg20+noise5", "--val_holdout", "2",
                       "--output_dir", str(tmp_path / "a")])  # fmt: skip
    train, val = build_datasets(args, instruction_size=64)
    assert len(train) == 4 and len(val) == 2  # the last 2 of the folder held out
    for item in [train[0], train[1], val[0]]:
        steps = json.loads(item["spec"])["steps"]
        assert [(st["name"], st.get("quality", st.get("sigma"))) for st in steps] == [("jpeg", 20), ("noise", 5.0)]
    mixed = parse_args([*common, "--train_dir", str(clean_dir), "--degradation", "jpeg20", "--clean_dirs", str(clean_dir),
                        "--kinds", "rain", "--val_holdout", "0", "--output_dir", str(tmp_path / "m")])  # fmt: skip
    mix, _ = build_datasets(mixed, instruction_size=64)  # your data beside the general mixture
    assert [json.loads(mix[i]["spec"])["name"] for i in (0, 6)] == ["jpeg", "rain"]
    hist = main(args)
    assert "val_psnr" in hist[-1]
    tuned = DefusionPipeline.from_pretrained(tmp_path / "a" / "pipeline")
    assert tuned.identifier is not None  # blind mode still works after a fine-tune
    for i in range(4):
        save_image(photo[:48, i * 40 : i * 40 + 48], tmp_path / "pairs" / "lq" / f"{i}.png")
        save_image(photo[:48, i * 40 : i * 40 + 48], tmp_path / "pairs" / "gt" / f"{i}.png")
    main(parse_args([*common, "--train_dir", str(tmp_path / "pairs"), "--degradation", "rain", "--output_dir",
                     str(tmp_path / "b")]))  # fmt: skip
    assert (tmp_path / "b" / "pipeline" / "model_index.json").is_file()
    for bad in (["--train_dir", str(clean_dir)], ["--train_dir", str(tmp_path / "nope"), "--degradation", "rain"],
                ["--train_dir", str(clean_dir), "--degradation", "smog"]):
        with pytest.raises(SystemExit):
            parse_args([*common, *bad, "--output_dir", str(tmp_path / "c")])


def test_instruction_bank_and_mismatch_train_and_resume(clean_dir, tmp_path):
    extra = ["--val_holdout", "0", "--checkpointing_steps", "3", "--kinds", "noise,rain,haze", "--kind_weights", "noise=3",
             "--instruction_bank", "8", "--p_mismatch", "0.5", "--ground_cache", "4", "--p_first_step", "0.7",
             "--bridge_blocks", "2", "--bridge_width0", "16"]  # fmt: skip
    hist = main(parse_args(base(clean_dir, tmp_path, 3, *extra)))
    bank_dir = tmp_path / "instruction_bank"
    assert (bank_dir / "codes.safetensors").is_file() and len(hist) == 3
    before = (bank_dir / "codes.safetensors").read_bytes()
    resumed = main(parse_args(base(clean_dir, tmp_path, 5, *extra, "--resume_from_checkpoint", "latest")))
    assert [h["step"] for h in resumed] == [4, 5]
    assert (bank_dir / "codes.safetensors").read_bytes() == before  # the resumed run reuses the saved bank
    bridge_cfg = json.loads((tmp_path / "pipeline" / "bridge" / "config.json").read_text())
    assert bridge_cfg["num_res_blocks"] == 2 and bridge_cfg["feature_channels"][0] == 16


def test_bank_draws_the_data_of_a_run_without_instructions(clean_dir, tmp_path):
    """--instruction_mode none with a bank: the bank's specs degrade the images (the same data as a run with
    instructions, for ablations), the denoiser sees zero tokens."""
    import torch
    from train_defusion import instruction_tokens

    args = parse_args(base(clean_dir, tmp_path, 2, "--val_holdout", "0", "--kinds", "noise,rain",
                           "--instruction_bank", "6", "--ground_cache", "2", "--instruction_mode", "none",
                           "--data_on_device", "--unet_overrides", '{"block_out_channels": [8, 24]}'))  # fmt: skip
    hist = main(args)
    assert [h["step"] for h in hist] == [1, 2] and np.isfinite(hist[-1]["loss"])
    specs = json.loads((tmp_path / "instruction_bank" / "specs.json").read_text())
    assert len(specs) == 6
    from defusion import DefusionPipeline

    saved = DefusionPipeline.from_pretrained(tmp_path / "pipeline")
    assert list(saved.unet.config.block_out_channels) == [8, 24]  # --unet_overrides shaped the fresh U-Net
    tok = saved.degradation_tokenizer
    batch = {"lq": torch.rand(3, 3, 8, 8), "tokens": torch.ones(3, tok.num_tokens, tok.token_dim)}
    assert not instruction_tokens(args, batch, tok, None).any()


def test_severity_ranges_reach_the_bank(clean_dir, tmp_path):
    extra = ["--val_holdout", "0", "--kinds", "noise,jpeg", "--severity", "jpeg=0.8:1,noise=0.5",
             "--instruction_bank", "12", "--ground_cache", "2"]  # fmt: skip
    main(parse_args(base(clean_dir, tmp_path, 1, *extra)))
    specs = json.loads((tmp_path / "instruction_bank" / "specs.json").read_text())
    steps = [s for spec in specs for s in spec.get("steps", [spec])]
    assert {s["name"] for s in steps} == {"noise", "jpeg"}
    assert all(s["quality"] <= 28 for s in steps if s["name"] == "jpeg")
    assert all(s["sigma"] == 25.0 for s in steps if s["name"] == "noise")
    for bad in ["rain=0.2:0.5", "jpeg=0.9:0.1", "jpeg=a:b", "jpeg=1.5"]:
        with pytest.raises(SystemExit):  # rejected by the argument parser, before any model is built
            parse_args(base(clean_dir, tmp_path / "bad", 1, "--kinds", "noise,jpeg", "--severity", bad))


def test_params_reach_the_bank(clean_dir, tmp_path):
    extra = ["--val_holdout", "0", "--kinds", "low_light,noise", "--severity", "low_light=1",
             "--params", "low_light.noise=0.1:2:log", "--instruction_bank", "12", "--ground_cache", "2"]  # fmt: skip
    main(parse_args(base(clean_dir, tmp_path, 1, *extra)))
    specs = json.loads((tmp_path / "instruction_bank" / "specs.json").read_text())
    dark = [s for spec in specs for s in spec.get("steps", [spec]) if s["name"] == "low_light"]
    assert dark and all(0.1 <= s["noise"] <= 2 and s["exposure"] == 0.12 for s in dark)
    for bad in ["low_light.noise=2:0.1", "low_light.noise=0:1:log", "low_light.foo=0:1", "rain.length=5:9",
                "low_light=0:1", "low_light.noise=a:b", "low_light.noise=1", "low_light.noise=0.1:2:log@1.5"]:  # fmt: skip
        with pytest.raises(SystemExit):  # rejected by the argument parser, before any model is built
            parse_args(base(clean_dir, tmp_path / "bad", 1, "--kinds", "low_light,noise", "--params", bad))
    with pytest.raises(SystemExit):  # a --degradation spec would ignore the draws
        parse_args(base(clean_dir, tmp_path / "bad", 1, "--train_dir", str(clean_dir), "--degradation", "low_light",
                        "--kinds", "low_light", "--params", "low_light.noise=0.1:2:log"))  # fmt: skip


def test_bank_and_mismatch_arguments(clean_dir, tmp_path):
    with pytest.raises(SystemExit):  # text instructions cannot come from a bank of visual ones
        parse_args(base(clean_dir, tmp_path, 1, "--instruction_bank", "4", "--instruction_mode", "text",
                        "--text_encoder", "x", "--text_tokenizer", "y"))  # fmt: skip
    with pytest.raises(SystemExit):  # a mismatched instruction needs an instruction
        parse_args(base(clean_dir, tmp_path, 1, "--instruction_bank", "4", "--instruction_mode", "none",
                        "--p_mismatch", "0.2"))  # fmt: skip
    with pytest.raises(SystemExit):
        parse_args(base(clean_dir, tmp_path, 1, "--p_mismatch", "1.5"))
    for bad in ("{block_out_channels: 8}", '{"widths": [8, 16]}', "[8, 16]"):
        with pytest.raises(SystemExit):
            parse_args(base(clean_dir, tmp_path, 1, "--unet_overrides", bad))
    with pytest.raises(SystemExit):
        parse_args(base(clean_dir, tmp_path, 1, "--bridge_blocks", "0"))
    with pytest.raises(SystemExit):
        parse_args([*base(clean_dir, tmp_path, 1, "--p_first_step", "0.5"), "--timestep_sampling", "uniform"])
    with pytest.raises(ValueError, match="not in --kinds"):
        main(parse_args(base(clean_dir, tmp_path, 1, "--val_holdout", "0", "--kind_weights", "rain=2")))


def test_inference_step_probs():
    import torch

    torch.testing.assert_close(inference_step_probs(4), torch.full((4,), 0.25))
    probs = inference_step_probs(4, 0.5)
    torch.testing.assert_close(probs, torch.tensor([0.5, 1 / 6, 1 / 6, 1 / 6]))
    assert inference_step_probs(1, 0.3).tolist() == [1.0]


def test_history_is_written_at_checkpoints(tmp_path):
    """A killed run keeps the rows up to its last flush (checkpoint); a resumed run appends only new rows."""
    from defusion.training_utils import TrainHistory

    path = tmp_path / "run" / "train_history.jsonl"
    h = TrainHistory(path)
    h.append({"step": 1, "loss": 0.5})
    h.append({"step": 2, "loss": 0.4})
    h.flush()
    h.append({"step": 3, "loss": 0.3})  # not flushed: lost if the run is killed now
    assert [json.loads(r)["step"] for r in path.read_text().splitlines()] == [1, 2]
    h.flush()
    h.flush()  # nothing new: nothing written twice
    resumed = TrainHistory(path)
    resumed.append({"step": 4, "loss": 0.2})
    resumed.flush()
    assert [json.loads(r)["step"] for r in path.read_text().splitlines()] == [1, 2, 3, 4]
    assert h == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}, {"step": 3, "loss": 0.3}]


def test_kill_and_resume_is_bit_exact(clean_dir, tmp_path):
    """SIGKILL a run after a checkpoint, damage its newest checkpoint, resume from 'latest': the run falls back to
    the last intact checkpoint and ends with the same weights and losses as a run that was never interrupted."""
    import signal
    import time

    import torch
    from safetensors.torch import load_file

    args = [*base(clean_dir, tmp_path / "x", 8, "--val_holdout", "0", "--checkpointing_steps", "2", "--use_ema",
                  "--train_batch_size", "2")]  # fmt: skip
    straight = main(parse_args([*args, "--output_dir", str(tmp_path / "straight")]))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train" / "train_defusion.py"), *args, "--output_dir", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    history = killed / "train_history.jsonl"
    deadline = time.time() + 240
    while not (history.is_file() and len(history.read_text().splitlines()) >= 4):  # checkpoint-4 is complete
        assert proc.poll() is None and time.time() < deadline, "the run ended or stalled before its second checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "pipeline").exists()
    newest = max((d for d in killed.iterdir() if d.name.startswith("checkpoint-")), key=lambda d: int(d.name[11:]))
    (newest / "optimizer.bin").write_bytes((newest / "optimizer.bin").read_bytes()[:100])  # truncated
    resumed = main(parse_args([*args, "--output_dir", str(killed), "--resume_from_checkpoint", "latest"]))
    assert resumed[0]["step"] < int(newest.name[11:]) + 1  # it went back past the damaged checkpoint
    rows = [json.loads(r) for r in history.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))  # every step once
    assert [r["loss"] for r in rows] == [r["loss"] for r in straight]  # the same losses, bit for bit
    for name in ("unet", "bridge", "adapter"):
        a = load_file(str(tmp_path / "straight" / "pipeline" / name / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(killed / "pipeline" / name / "diffusion_pytorch_model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert not [d for d in killed.iterdir() if d.name.endswith(".tmp")]  # no half-written checkpoint left


def test_damaged_checkpoints_are_named(clean_dir, tmp_path):
    from defusion.training_utils import checkpoint_problem, resolve_resume

    main(parse_args(base(clean_dir, tmp_path, 2, "--val_holdout", "0", "--checkpointing_steps", "1", "--use_ema")))
    ck = tmp_path / "checkpoint-2"
    assert checkpoint_problem(ck) is None and resolve_resume(tmp_path, "latest") == ck
    weights = ck / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert "diffusion_pytorch_model.safetensors" in checkpoint_problem(ck)
    warnings = []
    assert resolve_resume(tmp_path, "latest", warn=warnings.append) == tmp_path / "checkpoint-1"
    assert "checkpoint-2" in warnings[0]
    with pytest.raises(ValueError, match="cannot resume from .*checkpoint-2"):
        resolve_resume(tmp_path, "checkpoint-2")
    (ck / "random_states_0.pkl").write_bytes(b"")
    assert "random_states_0.pkl is empty" in checkpoint_problem(ck)


def test_validation_means_leave_out_samples_their_degradation_did_not_change():
    from defusion.training_utils import validation_means

    res = validation_means([20.0, float("inf"), 30.0], [25.0, 60.0, 33.0])
    assert res == {"val_unchanged": 1, "val_psnr_input": 25.0, "val_psnr": 29.0}
    assert validation_means([float("inf")], [50.0]) == {"val_unchanged": 1}
    assert validation_means([20.0], [22.0], suffix="/rain") == {"val_unchanged/rain": 0, "val_psnr_input/rain": 20.0,
                                                               "val_psnr/rain": 22.0}  # fmt: skip
