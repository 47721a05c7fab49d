"""The identifier training script on CPU with the tiny preset: appearance jitter, fine-tuning a trained
identifier (its thresholds kept), bad arguments."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_identifier import IdentifierDataset, jitter_spec, main, parse_args, parse_jitter  # noqa: E402

from defusion import degradations as D  # noqa: E402
from defusion.perception import DegradationIdentifier  # noqa: E402


def _images(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((48, 56, 3)) * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def test_jitter_widens_parameters_within_their_ranges():
    rng = np.random.default_rng(0)
    base = D.Rain.from_severity(0.1, np.random.default_rng(1))
    drawn = [jitter_spec(base, rng, 0.5) for _ in range(200)]
    density = np.array([d.density for d in drawn])
    assert density.min() < 0.6 * base.density and density.max() > 1.6 * base.density  # sparser and denser rain
    assert all(0.0 <= d.opacity <= 1.0 and 1 <= d.width <= 10 and isinstance(d.width, int) for d in drawn)
    assert jitter_spec(base, rng, 0.0) == base
    noise = D.GaussianNoise(sigma=10.0, quantize=True)
    assert jitter_spec(noise, rng, 0.5).quantize is True  # flags stay
    assert parse_jitter("rain=0.5, snow=0.25", D.names()) == {"rain": 0.5, "snow": 0.25}
    assert parse_jitter(None, D.names()) == {}
    for bad in ("fog=0.5", "rain", "rain=3", "rain=lots"):
        with pytest.raises(ValueError, match="--jitter"):
            parse_jitter(bad, D.names())


def test_dataset_jitters_only_the_named_kinds(monkeypatch):
    monkeypatch.setattr("train_identifier.load_image", lambda f: f)
    files = [np.random.default_rng(0).random((40, 40, 3), dtype=np.float32)] * 4
    plain = IdentifierDataset(files, ["rain"], 32, seed=0, train=False, p_clean=0.0, max_mix=1)
    jittered = IdentifierDataset(files, ["rain"], 32, seed=0, train=False, p_clean=0.0, max_mix=1, jitter={"rain": 0.5})
    other = IdentifierDataset(files, ["rain"], 32, seed=0, train=False, p_clean=0.0, max_mix=1, jitter={"snow": 0.5})
    for i in range(2):
        (x0, p0, s0), (x1, p1, s1), (x2, _, _) = plain[i], jittered[i], other[i]
        assert (p0 == p1).all() and (s0 == s1).all()  # labels stay
        assert not (x0 == x1).all() and (x0 == x2).all()


def test_fine_tune_keeps_the_config(tmp_path, monkeypatch):
    monkeypatch.setattr("train_identifier.load_image", lambda f: np.asarray(Image.open(f), np.float32) / 255)
    clean = _images(tmp_path / "clean")
    start = DegradationIdentifier.from_preset("tiny")
    start.register_to_config(kind_thresholds={"rain": 0.4}, thresholds_given={"noise": {"rain": 0.5}})
    start.save_pretrained(tmp_path / "start")
    args = ["--pretrained", str(tmp_path / "start"), "--jitter", "rain=0.5", "--clean_dirs", str(clean),
            "--val_holdout", "2", "--train_batch_size", "2", "--max_train_steps", "3", "--checkpointing_steps", "2",
            "--cpu", "--output_dir", str(tmp_path / "out")]  # fmt: skip
    hist = main(parse_args(args))
    assert [h["step"] for h in hist] == [1, 2, 3] and all(np.isfinite(h["loss"]) for h in hist)
    tuned = DegradationIdentifier.from_pretrained(tmp_path / "out" / "identifier")
    assert tuned.config.kind_thresholds == {"rain": 0.4} and tuned.config.thresholds_given == {"noise": {"rain": 0.5}}
    assert tuned.config.crop == start.config.crop
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0.0 <= metrics["val_exact_set_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="--jitter"):
        main(parse_args(args[:3] + ["fog=1"] + args[4:]))


def test_zero_steps_only_evaluates(tmp_path, monkeypatch):
    monkeypatch.setattr("train_identifier.load_image", lambda f: np.asarray(Image.open(f), np.float32) / 255)
    clean = _images(tmp_path / "clean")
    DegradationIdentifier.from_preset("tiny").save_pretrained(tmp_path / "start")
    hist = main(parse_args(["--pretrained", str(tmp_path / "start"), "--clean_dirs", str(clean), "--val_holdout", "2",
                            "--max_train_steps", "0", "--train_batch_size", "2", "--cpu", "--output_dir", str(tmp_path / "out")]))  # fmt: skip
    assert list(hist) == []
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["steps"] == 0
