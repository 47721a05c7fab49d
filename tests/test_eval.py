import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from defusion import degradations as D
from defusion.eval import discover_paired_sets, evaluate, load_method, parse_task, parse_tasks
from defusion.images import load_image, save_image
from defusion.metrics import psnr, ssim

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, photo):
    """A tiny data root: a colour clean set, a grey clean set and a paired set."""
    root = tmp_path_factory.mktemp("data")
    for i, (top, left) in enumerate([(0, 0), (40, 60), (100, 120)]):
        crop = photo[top : top + 72, left : left + 88]  # 72 x 88: not a multiple of 16
        save_image(crop, root / "CBSD68" / "gt" / f"img{i}.png")
        save_image(crop.mean(-1, keepdims=True), root / "Set12" / "gt" / f"g{i}.png")
        save_image(crop, root / "Pairs" / "gt" / f"p{i}.png")
        save_image(D.Haze(beta=1.0).apply(crop, i), root / "Pairs" / "lq" / f"p{i}.png")
    return root


def test_identity_noise25_matches_direct_computation(data_root):
    res = evaluate("identity", "CBSD68:noise25", data_root, progress=False, lpips=False)
    direct = []
    for path in sorted((data_root / "CBSD68" / "gt").glob("*.png")):
        gt = load_image(path)[4:68, 4:84]  # centre crop to 64 x 80
        seed = zlib.crc32(f"CBSD68/{path.stem}/noise25".encode())  # the documented per-image seed
        noisy = D.GaussianNoise(sigma=25).apply(gt, np.random.default_rng(seed + 1))
        direct.append(psnr(noisy, gt, crop_multiple=None))
    r = res["tasks"]["CBSD68:noise25"]
    assert r["count"] == 3
    assert r["psnr"] == pytest.approx(np.mean(direct), abs=1e-9)
    assert r["psnr"] == pytest.approx(r["input_psnr"])


def test_runs_are_identical_and_outputs_written(data_root, tmp_path):
    a = evaluate("nlm", "CBSD68:noise15,Set12:jpeg20", data_root, out_dir=tmp_path / "a", progress=False, lpips=False)
    b = evaluate("nlm", "CBSD68:noise15,Set12:jpeg20", data_root, out_dir=tmp_path / "b", progress=False, lpips=False)
    for t in a["tasks"]:
        for k in ("psnr", "ssim", "input_psnr", "count"):
            assert a["tasks"][t][k] == b["tasks"][t][k]
    out = tmp_path / "a"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"CBSD68:noise15", "Set12:jpeg20"}
    assert summary["tasks"]["CBSD68:noise15"]["lpips"] is None
    assert len((out / "per_image.csv").read_text().strip().splitlines()) == 1 + 6
    assert "| CBSD68:noise15 | nlm | 3 |" in (out / "summary.md").read_text()
    assert (out / "gallery" / "CBSD68_noise15.png").is_file()


def test_nlm_improves_noise_and_grey_sets_score_one_channel(data_root):
    res = evaluate("nlm", "CBSD68:noise25,Set12:noise25", data_root, progress=False, lpips=False)["tasks"]
    for t in res.values():
        assert t["psnr"] > t["input_psnr"] + 2


def test_paired_sets_are_detected_and_used(data_root):
    assert discover_paired_sets(data_root) == ["Pairs"]
    res = evaluate("dcp", "Pairs:paired", data_root, progress=False, lpips=False)["tasks"]["Pairs:paired"]
    assert res["count"] == 3 and res["psnr"] > res["input_psnr"]


def test_missing_sets_are_skipped_with_a_note(data_root):
    res = evaluate("identity", "Kodak24:rain,CBSD68:rain", data_root, progress=False, lpips=False)
    assert "Kodak24:rain" in res["skipped"] and "CBSD68:rain" in res["tasks"]


def test_task_parsing_and_presets():
    t = parse_task("Kodak24:rain+snow+noise25@0.7")
    assert t.dataset == "Kodak24" and t.severity == 0.7 and t.spec("x").names == "rain+snow+noise"
    assert [x.name for x in parse_tasks("aio3")][:3] == ["CBSD68:noise15", "CBSD68:noise25", "CBSD68:noise50"]
    assert len(parse_tasks("mixed6")) == 6 and len({x.degradation for x in parse_tasks("mixed6")}) == 6
    assert len(parse_tasks("defusion8")) == 8
    assert len(parse_tasks("aio3,CBSD68:noise25")) == 5  # no duplicates
    for bad in ["CBSD68", "CBSD68:smog", ":noise25", "CBSD68:noise@2"]:
        with pytest.raises(ValueError):
            parse_tasks(bad)
    with pytest.raises(ValueError, match="registered"):
        load_method("restormer-from-the-moon")


def test_synthetic_inputs_are_seeded_per_image():
    t = parse_task("Kodak24:rain")
    assert t.spec("kodim01") == t.spec("kodim01")
    assert t.spec("kodim01") != t.spec("kodim02")


@pytest.mark.parametrize("name", ["bm3d", "bm3d-pca", "dcp", "unsharp", "wiener", "identity", "nlm", "nlm-pca"])
def test_classical_methods_keep_shape_and_range(name, photo):
    img = np.ascontiguousarray(photo[:48, :64])
    out = load_method(name)(img)
    assert out.shape == img.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("name", ["bm3d", "bm3d-pca"])
def test_bm3d_denoises(name, photo):
    gt = np.ascontiguousarray(photo[:64, :64])
    noisy = D.GaussianNoise(sigma=25).apply(gt, 0)
    out = load_method(name)(noisy)
    assert psnr(out, gt) > psnr(noisy, gt) + 4 and ssim(out, gt) > ssim(noisy, gt)


def test_pca_baselines_read_the_pca_sigma(photo, monkeypatch):
    import defusion.eval.methods as methods

    seen = []
    real = methods.estimate_noise_sigma
    monkeypatch.setattr(methods, "estimate_noise_sigma", lambda img, method="wavelet": seen.append(method) or real(img, method))
    img = np.ascontiguousarray(photo[:48, :64])
    load_method("nlm-pca")(img), load_method("nlm")(img)
    assert seen == ["pca", "wavelet"]


@pytest.mark.skipif(not (SHARED / "CBSD68" / "gt").is_dir(), reason="shared data not present")
def test_identity_on_real_cbsd68_first_images():
    res = evaluate("identity", "CBSD68:noise25", SHARED, limit=3, progress=False, lpips=False)
    r = res["tasks"]["CBSD68:noise25"]
    assert r["count"] == 3 and 19.5 < r["psnr"] < 21.5  # AWGN 25 on uint8 images: ~20.5 dB


def test_saved_pipeline_folder_is_a_method(data_root, tmp_path):
    import torch

    from defusion import DefusionPipeline

    torch.manual_seed(0)
    DefusionPipeline.from_preset("tiny").save_pretrained(tmp_path / "pipe")
    res = evaluate(str(tmp_path / "pipe"), "CBSD68:noise25", data_root, limit=1, progress=False, lpips=False)
    r = res["tasks"]["CBSD68:noise25"]
    assert r["count"] == 1 and np.isfinite(r["psnr"])
    assert load_method(str(tmp_path / "pipe")).num_parameters > 0
    shipped = load_method("defusion-small")  # a shipped model by name
    assert shipped.instruction == "auto" and shipped.pipe.identifier is not None
