"""The tokenizer training script on CPU with the tiny preset: it learns, checkpoints and resumes exactly."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_tokenizer import main, parse_args  # noqa: E402

BASE = ["--preset", "tiny", "--num_samples", "4", "--train_batch_size", "4", "--learning_rate", "3e-3",
        "--perceptual_weight", "0", "--disc_weight", "0", "--report_to", "none", "--validation_steps", "0",
        "--cpu"]  # fmt: skip


def test_tiny_tokenizer_overfits_a_handful_of_instructions(tmp_path):
    hist = main(parse_args(BASE + ["--output_dir", str(tmp_path), "--max_train_steps", "50", "--checkpointing_steps", "1000",
                                   "--dead_code_restart_steps", "20"]))  # fmt: skip
    first, last = hist[0]["mse"], sum(h["mse"] for h in hist[-5:]) / 5
    assert last < first / 3, f"reconstruction MSE fell only from {first:.4f} to {last:.4f}"
    assert (tmp_path / "tokenizer" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((tmp_path / "run_config.json").read_text())["lpips"] == "disabled"


def test_resume_continues_the_same_loss_curve(tmp_path):
    args = ["--max_train_steps", "6", "--checkpointing_steps", "3", "--dead_code_restart_steps", "0"]
    straight = main(parse_args(BASE + args + ["--output_dir", str(tmp_path / "a")]))
    main(parse_args(BASE + ["--max_train_steps", "3", "--checkpointing_steps", "3", "--dead_code_restart_steps", "0",
                            "--output_dir", str(tmp_path / "b")]))  # fmt: skip
    resumed = main(parse_args(BASE + args + ["--output_dir", str(tmp_path / "b"), "--resume_from_checkpoint", "latest"]))
    assert [h["step"] for h in resumed] == [4, 5, 6]
    for a, b in zip(straight[3:], resumed):
        assert a["mse"] == pytest.approx(b["mse"], rel=1e-4, abs=1e-6)


def test_gan_and_validation_path(tmp_path):
    hist = main(parse_args(BASE + ["--output_dir", str(tmp_path), "--max_train_steps", "4", "--disc_weight", "0.8",
                                   "--disc_start", "2", "--validation_steps", "4", "--use_ema", "--checkpointing_steps", "2",
                                   "--checkpoints_total_limit", "1"]))  # fmt: skip
    assert "g_loss" not in hist[0] and "d_loss" in hist[-1]
    assert (tmp_path / "validation" / "step_0000004.png").is_file()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-4"]
    assert (tmp_path / "checkpoint-4" / "tokenizer_ema").is_dir()


def test_resume_from_missing_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(parse_args(BASE + ["--output_dir", str(tmp_path), "--max_train_steps", "1",
                                "--resume_from_checkpoint", "checkpoint-99"]))  # fmt: skip
