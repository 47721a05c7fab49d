"""train_restorer.py on CPU with tiny presets: every model trains, loss falls, resume works."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_restorer import main, parse_args  # noqa: E402


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory, photo):
    from defusion.images import save_image

    d = tmp_path_factory.mktemp("clean")
    for i in range(5):
        save_image(photo[i * 20 : i * 20 + 40, i * 30 : i * 30 + 40], d / f"{i}.png")
    return d


def args(clean_dir, out, model, steps, *extra):
    return ["--model", model, "--preset", "tiny", "--clean_dirs", str(clean_dir), "--resolution", "32",
            "--train_batch_size", "4", "--max_train_steps", str(steps), "--output_dir", str(out), "--cpu",
            "--val_holdout", "1", *extra]  # fmt: skip


@pytest.mark.parametrize("model", ["restormer", "promptir", "dfpir"])
def test_each_model_trains_and_saves_a_pipeline(model, clean_dir, tmp_path):
    hist = main(parse_args(args(clean_dir, tmp_path, model, 3, "--kind_repeats", "3,1,1", "--use_ema")))
    assert len(hist) == 3 and all(np.isfinite(h["loss"]) for h in hist)
    assert {"val_psnr/noise", "val_psnr/rain", "val_psnr/haze"} <= set(hist[-1])
    from defusion import RestorerPipeline

    RestorerPipeline.from_pretrained(tmp_path / "pipeline")


def test_loss_falls(clean_dir, tmp_path):
    hist = main(parse_args(args(clean_dir, tmp_path, "restormer", 40, "--kinds", "noise", "--learning_rate", "2e-3")))
    losses = [h["loss"] for h in hist]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), losses


def test_resume(clean_dir, tmp_path):
    main(parse_args(args(clean_dir, tmp_path, "dfpir", 2, "--checkpointing_steps", "2", "--use_ema")))
    hist = main(parse_args(args(clean_dir, tmp_path, "dfpir", 4, "--checkpointing_steps", "2", "--use_ema",
                                "--resume_from_checkpoint", "latest")))  # fmt: skip
    assert [h["step"] for h in hist] == [3, 4]


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        parse_args(["--model", "restormer", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        parse_args(["--model", "swinir", "--output_dir", str(tmp_path), "--clean_dirs", "x"])


def test_second_stage_from_a_saved_pipeline(clean_dir, tmp_path):
    main(parse_args(args(clean_dir, tmp_path / "a", "dfpir", 1)))
    hist = main(parse_args(args(clean_dir, tmp_path / "b", "dfpir", 1, "--pretrained_pipeline", str(tmp_path / "a" / "pipeline"),
                                "--learning_rate", "1e-5")))  # fmt: skip
    assert len(hist) == 1
    with pytest.raises(ValueError, match="not promptir"):
        main(parse_args(args(clean_dir, tmp_path / "c", "promptir", 1, "--pretrained_pipeline", str(tmp_path / "a" / "pipeline"))))
