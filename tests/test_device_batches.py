"""The device training data path on CPU: resident images, batches degraded in place, the training loop and the
throughput benchmark on it."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from defusion.data import DeviceBatches, InstructionBank, ResidentImages
from defusion.models import DegradationTokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), rng.integers(0, 256, (48, 36), dtype=np.uint8),
            rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)]  # fmt: skip


@pytest.fixture(scope="module")
def bank():
    torch.manual_seed(0)
    tok = DegradationTokenizer.from_preset("tiny").eval()
    return InstructionBank.build(tok, 6, ["noise", "haze", "jpeg"], seed=1, ground_cache=2)


def test_resident_crops_are_the_pixels(images):
    res = ResidentImages(images)
    assert len(res) == 3 and res.pixels.dtype == torch.uint8 and res.sizes.tolist() == [[40, 56], [48, 36], [20, 20]]
    crop = res.crops(np.array([0, 1]), np.array([3, 10]), np.array([5, 2]), 16)
    assert crop.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal((crop[0] * 255).round().byte().permute(1, 2, 0).numpy(), images[0][3:19, 5:21])
    grey = (crop[1] * 255).round().byte().numpy()
    assert (grey == images[1][10:26, 2:18][None]).all()  # grey: the same plane on the three channels
    with pytest.raises(ValueError, match="outside"):
        res.crops(np.array([2]), np.array([10]), np.array([0]), 16)
    with pytest.raises(ValueError, match="uint8"):
        ResidentImages([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="no images"):
        ResidentImages([])


def test_batches_are_seeded_paired_and_mismatched_as_the_dataset(images, bank):
    data = DeviceBatches(ResidentImages(images), bank, crop=16, batch_size=24, p_mismatch=0.5, seed=3)
    a, b, c = data.batch(7), data.batch(7), data.batch(8)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["lq"], c["lq"])
    assert a["lq"].shape == a["gt"].shape == (24, 3, 16, 16)
    assert a["lq"].min() >= -1 and a["lq"].max() <= 1
    torch.testing.assert_close(a["tokens"], bank.lookup(a["bank_index"]))
    m = a["mismatch"]
    assert 0 < int(m.sum()) < 24
    assert torch.equal(a["gt"][m], a["lq"][m])  # a non-matching instruction: the input is the target
    assert not torch.equal(a["gt"][~m], a["lq"][~m])
    for i in range(24):  # a mismatched instruction shows none of the applied kinds; a matching one is the applied spec
        shown = {s.name for s in bank.specs[int(a["bank_index"][i])].steps}
        applied = {s.name for s in bank.specs[int(a["spec_index"][i])].steps}
        assert not (shown & applied) if m[i] else int(a["bank_index"][i]) == int(a["spec_index"][i])
    with pytest.raises(ValueError, match="at least"):
        DeviceBatches(ResidentImages(images[2:]), bank, crop=32, batch_size=2)


def test_training_on_device_data_logs_every_n_steps(tmp_path, photo):
    sys.path.insert(0, str(ROOT / "train"))
    from train_defusion import main, parse_args

    from defusion.images import save_image

    for i in range(6):
        save_image(photo[i * 20 : i * 20 + 64, i * 10 : i * 10 + 64], tmp_path / "clean" / f"{i}.png")
    args = ["--preset", "tiny", "--clean_dirs", str(tmp_path / "clean"), "--val_holdout", "1", "--resolution", "32",
            "--train_batch_size", "4", "--instruction_bank", "6", "--data_on_device", "--p_mismatch", "0.25",
            "--kinds", "noise,jpeg", "--max_train_steps", "6", "--log_every", "3", "--validation_steps", "0",
            "--report_to", "none", "--cpu", "--use_ema", "--output_dir", str(tmp_path / "run")]  # fmt: skip
    history = main(parse_args(args))
    assert [r["step"] for r in history] == [3, 6] and all(np.isfinite(r["loss"]) for r in history)
    assert "val_psnr" in history[-1] and (tmp_path / "run" / "pipeline" / "model_index.json").is_file()
    with pytest.raises(SystemExit):
        parse_args([a for a in args if a not in ("--instruction_bank", "6")])  # the device path needs a bank


def test_throughput_benchmark_runs_on_cpu(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_throughput

    out = tmp_path / "tt.json"
    row = train_throughput.main(["--device", "cpu", "--preset", "tiny", "--batch", "2", "--crop", "32", "--seconds", "0.5",
                                 "--warmup", "1", "--bank", "4", "--out", str(out)])  # fmt: skip
    assert row["device"] == "cpu" and row["samples_per_s"] > 0 and row["gflop_per_sample"] > 0
    assert set(row["breakdown_ms_per_step_synced"]) == {"data", "forward_backward", "optimizer", "ema", "logging"}
    assert json.loads(out.read_text())[-1]["crop"] == 32
