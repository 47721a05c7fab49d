import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from defusion.cli import main


def test_instruct_list(capsys):
    assert main(["instruct", "--list"]) == 0
    out = capsys.readouterr().out.split()
    from defusion import degradations as D

    assert out == D.names()


def test_instruct_writes_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["instruct", "rain+noise", "-o", str(out), "--seed", "1"]) == 0
    assert Image.open(out).size[0] >= 3 * 224
    spec_line = capsys.readouterr().out.splitlines()[0]
    assert json.loads(spec_line.split(": ", 1)[1])["name"] == "compose"


def test_instruct_unknown_name_is_a_clean_error(tmp_path, capsys):
    assert main(["instruct", "rainn", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "unknown degradation" in err and "valid names" in err


def test_degrade(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.full((32, 40, 3), 128, np.uint8)).save(src)
    assert main(["degrade", str(src), "noise25", "-o", str(tmp_path / "out.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"), np.float32)
    assert out.shape == (32, 40, 3) and 15 < out.std() < 35


def test_console_script_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "defusion.cli", "instruct", "--list"], capture_output=True, text=True)
    assert r.returncode == 0 and "rain" in r.stdout.split()


def test_demo_writes_the_readme_outputs(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    for name in ["sample.png", "degradations.png", "mixed_instructions.png", "grounds.png", "restored.png"]:
        assert (tmp_path / name).stat().st_size > 10_000, name
    from defusion.weights import available

    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("restored.png:"))
    assert line.split()[1].rstrip(";") in available() and "blind" in line and "instructed" in line
    from PIL import Image

    assert Image.open(tmp_path / "restored.png").size[0] > 4 * Image.open(tmp_path / "sample.png").size[0] / 3


def test_demo_with_a_model_that_is_not_shipped(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--model", "defusion-nonexistent"]) != 0
    assert "not shipped" in capsys.readouterr().err
    assert not (tmp_path / "sample.png").exists()  # it fails before writing anything


def test_eval_command(tmp_path, capsys):
    from defusion.images import save_image

    rng = np.random.default_rng(0)
    for i in range(2):
        save_image(rng.random((40, 40, 3)).astype(np.float32), tmp_path / "data" / "Set" / "gt" / f"{i}.png")
    rc = main(["eval", "--method", "identity", "--tasks", "Set:noise25", "--data-root", str(tmp_path / "data"),
               "--out", str(tmp_path / "res"), "--no-lpips"])  # fmt: skip
    assert rc == 0
    assert "| Set:noise25 | identity | 2 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "res" / "summary.json").read_text())["tasks"]["Set:noise25"]["count"] == 2
    assert main(["eval", "--list", "--data-root", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "shipped models: defusion-small, dfpir-small, default (= defusion-small)" in out
    assert "preset aio3: CBSD68:noise15,CBSD68:noise25,CBSD68:noise50,Rain100L:paired,SOTS_outdoor_sample:paired" in out
    assert "(SET:paired): none" in out
    # methods from a plugin file
    (tmp_path / "plug.py").write_text("from defusion.eval import register_method\n"
                                      "def register():\n    register_method('flat', lambda: (lambda img: img * 0 + 0.5))\n")
    rc = main(["eval", "--plugin", str(tmp_path / "plug.py"), "--method", "flat", "--tasks", "Set:noise25",
               "--data-root", str(tmp_path / "data"), "--no-lpips"])  # fmt: skip
    assert rc == 0 and "| Set:noise25 | flat | 2 |" in capsys.readouterr().out
    assert main(["eval", "--method", "nope", "--tasks", "Set:noise25", "--data-root", str(tmp_path / "data")]) == 2
    # every task skipped (no such data): exit 1, say why, write nothing
    assert main(["eval", "--method", "identity", "--tasks", "Nowhere:noise25", "--data-root", str(tmp_path / "data"),
                 "--out", str(tmp_path / "none"), "--no-lpips"]) == 1  # fmt: skip
    assert "no task ran" in capsys.readouterr().err and not (tmp_path / "none").exists()
    # several methods side by side: one table, a folder each, nothing run when one name is unknown
    rc = main(["eval", "--compare", "identity,nlm-pca", "--tasks", "Set:noise25", "--data-root", str(tmp_path / "data"),
               "--out", str(tmp_path / "cmp"), "--no-lpips"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and "| Set:noise25 | identity | 2 |" in out and "| Set:noise25 | nlm-pca | 2 |" in out
    assert (tmp_path / "cmp" / "compare.md").read_text().count("| Set:noise25 |") == 2
    assert (tmp_path / "cmp" / "identity" / "summary.json").is_file() and (tmp_path / "cmp" / "nlm-pca" / "per_image.csv").is_file()
    assert main(["eval", "--compare", "identity,nope", "--tasks", "Set:noise25", "--data-root", str(tmp_path / "data"),
                 "--out", str(tmp_path / "cmp2")]) == 2 and not (tmp_path / "cmp2").exists()  # fmt: skip
    assert main(["eval", "--method", "identity", "--compare", "nlm", "--tasks", "Set:noise25"]) == 2


def test_restore_command(tmp_path, capsys):
    import torch

    from defusion import DefusionPipeline
    from defusion.images import save_image

    torch.manual_seed(0)
    DefusionPipeline.from_preset("tiny").save_pretrained(tmp_path / "pipe")
    save_image(np.random.default_rng(0).random((24, 30, 3)).astype(np.float32), tmp_path / "in.png")
    rc = main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", str(tmp_path / "pipe"),
               "--instruction", "rain+noise", "--compare", str(tmp_path / "cmp.png")])  # fmt: skip
    assert rc == 0 and Image.open(tmp_path / "out.png").size == (30, 24)
    assert Image.open(tmp_path / "cmp.png").size[0] > 3 * 24
    assert "rain+noise" in capsys.readouterr().out
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o2.png"), "--model", str(tmp_path / "pipe")]) == 0
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o3.png"), "--model", str(tmp_path)]) == 2
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o4.png"), "--model", str(tmp_path / "pipe"),
                 "--instruction", "rain+noise", "--self-ensemble"]) == 0  # fmt: skip
    assert Image.open(tmp_path / "o4.png").size == (30, 24)
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o5.png"), "--model", str(tmp_path / "pipe"),
                 "--self-ensemble", "2"]) == 0  # fmt: skip
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o6.png"), "--model", str(tmp_path / "pipe"),
                 "--self-ensemble", "3"]) == 2  # fmt: skip
    assert "self_ensemble must be" in capsys.readouterr().err and not (tmp_path / "o6.png").exists()
    # --precision: float32 is what the pipeline computes by default; bf16 rounds the network's arithmetic
    outs = {}
    for precision in ("fp32", "bf16"):
        assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / f"{precision}.png"), "--model",
                     str(tmp_path / "pipe"), "--instruction", "noise", "--precision", precision]) == 0  # fmt: skip
        outs[precision] = np.asarray(Image.open(tmp_path / f"{precision}.png"), np.int16)
    pipe = DefusionPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(np.asarray(Image.open(tmp_path / "in.png")), instruction="noise", generator=torch.Generator().manual_seed(0),
               instruction_seed=0, output_type="np").images[0]  # fmt: skip
    assert np.array_equal(outs["fp32"], np.round(ref * 255).astype(np.int16))
    assert 0 < np.abs(outs["bf16"] - outs["fp32"]).max() <= 8
    with pytest.raises(SystemExit):
        main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o7.png"), "--precision", "fp16"])
    # --sampler: another diffusers scheduler on the same noise schedule; DDIM is the model's own
    capsys.readouterr()
    for name in ("ddim", "dpm++"):
        assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / f"{name}.png"), "--model",
                     str(tmp_path / "pipe"), "--instruction", "noise", "--sampler", name, "--steps", "3", "--precision",
                     "fp32"]) == 0  # fmt: skip
    ref3 = pipe(np.asarray(Image.open(tmp_path / "in.png")), instruction="noise", num_inference_steps=3,
                generator=torch.Generator().manual_seed(0), output_type="np").images[0]  # fmt: skip
    ddim = np.asarray(Image.open(tmp_path / "ddim.png"), np.int16)
    assert np.array_equal(ddim, np.round(ref3 * 255).astype(np.int16))
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o8.png"), "--model", str(tmp_path / "pipe"),
                 "--sampler", "ddpm"]) == 2  # fmt: skip
    assert "unknown sampler 'ddpm'" in capsys.readouterr().err and not (tmp_path / "o8.png").exists()


def test_restore_many_images_with_one_bar(tmp_path, capsys):
    import torch

    from defusion import DefusionPipeline
    from defusion.images import save_image

    torch.manual_seed(0)
    DefusionPipeline.from_preset("tiny").save_pretrained(tmp_path / "pipe")
    rng = np.random.default_rng(0)
    (tmp_path / "in" / "more").mkdir(parents=True)
    shapes = {"a": (24, 30), "b": (40, 72), "c": (24, 30)}
    for stem, (h, w) in shapes.items():
        save_image(rng.random((h, w, 3)).astype(np.float32), tmp_path / "in" / f"{stem}.png")
    save_image(rng.random((20, 20, 3)).astype(np.float32), tmp_path / "in" / "more" / "d.jpg")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    args = ["restore", str(tmp_path / "in"), str(tmp_path / "in" / "more" / "*.jpg"), "-o", str(tmp_path / "out"),
            "--model", str(tmp_path / "pipe"), "--instruction", "noise", "--tile", "32", "--tile-overlap", "8",
            "--steps", "2"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png", "d.png"]
    for stem, (h, w) in shapes.items():
        assert Image.open(tmp_path / "out" / f"{stem}.png").size == (w, h)
    lines = [x for x in captured.err.splitlines() + captured.out.splitlines() if x.startswith("[")]
    assert len(lines) == 4 and lines[0].startswith("[1/4] a.png 30x24: instruction: noise") and "-> " in lines[0]
    # one bar over every image and tile: its total is what the pipeline counts, and it ends full
    pipe = DefusionPipeline.from_pretrained(tmp_path / "pipe")
    total = sum(pipe.num_evaluations(h, w, "noise", 2, tile_size=32, tile_overlap=8)
                for h, w in [*shapes.values(), (20, 20)])  # fmt: skip
    assert pipe.num_evaluations(40, 72, "noise", 2, tile_size=32, tile_overlap=8) > 2  # b is tiled
    bars = [x for x in captured.err.replace("\r", "\n").splitlines() if "4 image(s)" in x]
    assert bars and f"{total}/{total}" in bars[-1] and all(f"/{total}" in b for b in bars)
    # skip what exists; quiet says nothing; a broken file fails alone
    (tmp_path / "out" / "b.png").unlink()
    (tmp_path / "in" / "e.png").write_bytes(b"not a png")
    assert main([*args, "--skip-existing", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "e.png" in captured.err and "skipped" not in captured.err + captured.out and "[" not in captured.out
    assert (tmp_path / "out" / "b.png").is_file() and not (tmp_path / "out" / "e.png").exists()
    # several inputs need a folder; an output never replaces an input; names must not clash
    (tmp_path / "in" / "e.png").unlink()
    assert main([*args[:3], "-o", str(tmp_path / "x.png"), "--model", str(tmp_path / "pipe")]) == 2
    assert "output folder" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "in" / "a.png"), "-o", str(tmp_path / "in" / "a.png"),
                 "--model", str(tmp_path / "pipe")]) == 2  # fmt: skip
    assert "overwrite its input" in capsys.readouterr().err
    save_image(rng.random((20, 20, 3)).astype(np.float32), tmp_path / "in" / "more" / "a.jpg")
    assert main(["restore", str(tmp_path / "in"), str(tmp_path / "in" / "more"), "-o", str(tmp_path / "o2"),
                 "--model", str(tmp_path / "pipe")]) == 2  # fmt: skip
    assert "same file" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    assert main(["restore", str(tmp_path / "nothing*.png"), "-o", str(tmp_path / "o3"), "--model", str(tmp_path / "pipe")]) == 2


def test_restore_and_eval_with_a_restorer_pipeline(tmp_path, capsys):
    import torch

    from defusion import RestorerPipeline
    from defusion.eval.methods import PipelineMethod, load_method
    from defusion.images import save_image

    torch.manual_seed(0)
    RestorerPipeline.from_preset("dfpir", "tiny").save_pretrained(tmp_path / "dfpir")
    img = np.random.default_rng(0).random((24, 30, 3)).astype(np.float32)
    save_image(img, tmp_path / "in.png")
    rc = main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", str(tmp_path / "dfpir"),
               "--instruction", "rain", "--compare", str(tmp_path / "cmp.png")])  # fmt: skip
    assert rc == 0 and Image.open(tmp_path / "out.png").size == (30, 24)
    assert Image.open(tmp_path / "cmp.png").size[0] > 2 * 24 and "degradation: rain" in capsys.readouterr().out
    # no identifier for "auto", and DFPIR needs a degradation: clean errors, nothing written
    for extra in (["--instruction", "auto"], ["--instruction", "none"], ["--instruction", "rain", "--self-ensemble"],
                  ["--instruction", "rain", "--sampler", "dpm++"]):
        assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "bad.png"), "--model",
                     str(tmp_path / "dfpir"), *extra]) == 2  # fmt: skip
    assert not (tmp_path / "bad.png").exists()
    assert main(["demo", "-o", str(tmp_path / "demo"), "--model", str(tmp_path / "dfpir")]) == 2
    assert "defusion restore" in capsys.readouterr().err and not (tmp_path / "demo").exists()
    method = load_method(str(tmp_path / "dfpir"))
    assert method.restorer and method.num_parameters == sum(p.numel() for p in method.pipe.restorer.parameters())
    assert method.sampler == "one pass"
    method.instruction = "rain"
    out = method(img)
    assert out.shape == img.shape and out.dtype == np.float32
    with pytest.raises(ValueError, match="one pass"):
        PipelineMethod(tmp_path / "dfpir", self_ensemble=4)


def test_shipped_weights_resolve_by_name(tmp_path, capsys):
    import torch

    from defusion import DefusionPipeline
    from defusion.images import save_image
    from defusion.weights import available, resolve

    assert "defusion-small" in available()
    from defusion.weights import WEIGHTS

    total = sum(f.stat().st_size for f in WEIGHTS.rglob("*") if f.is_file())
    assert total < 60e6, f"shipped weights are {total / 1e6:.1f} MB; the budget is 60 MB"
    assert resolve(str(tmp_path)) == str(tmp_path) and resolve("org/some-hub-model") == "org/some-hub-model"
    with pytest.raises(FileNotFoundError, match="not shipped"):
        resolve("defusion-huge")
    pipe = DefusionPipeline.from_pretrained("defusion-small", dtype=torch.float32)
    assert pipe.identifier is not None and pipe.unet.config.in_channels == 12  # the small U-Net (2x2 pixel-unshuffle)
    save_image(np.random.default_rng(0).random((40, 48, 3)).astype(np.float32), tmp_path / "in.png")
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", "defusion-small",
                 "--instruction", "noise"]) == 0  # fmt: skip
    assert Image.open(tmp_path / "o.png").size == (48, 40)
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o2.png")]) == 0  # default: defusion-small
    assert Image.open(tmp_path / "o2.png").size == (48, 40)
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o3.png"), "--model", "defusion-huge"]) == 2
    assert "not shipped" in capsys.readouterr().err


def test_shipped_dfpir_small(tmp_path, capsys):
    import torch

    from defusion import RestorerPipeline
    from defusion.images import save_image
    from defusion.models import DFPIR
    from defusion.weights import available, resolve

    assert "dfpir-small" in available()
    with pytest.raises(FileNotFoundError, match="not shipped"):
        resolve("dfpir-huge")
    pipe = RestorerPipeline.from_pretrained("dfpir-small", dtype=torch.float32)
    assert isinstance(pipe.restorer, DFPIR) and pipe.identifier is not None
    assert sum(p.numel() for p in pipe.restorer.parameters()) == 6_045_087  # the small preset
    clean = np.random.default_rng(0).random((40, 48, 3)).astype(np.float32) * 0.5 + 0.25
    save_image(clean, tmp_path / "in.png")
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", "dfpir-small",
                 "--instruction", "noise", "--compare", str(tmp_path / "cmp.png")]) == 0  # fmt: skip
    assert Image.open(tmp_path / "o.png").size == (48, 40) and "degradation: noise" in capsys.readouterr().out
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o2.png"), "--model", "dfpir-small"]) == 0
    assert "(detected)" in capsys.readouterr().out
    # the trained weights denoise: a smooth image with sigma-25 noise, told "noise", gets closer to the clean one
    from defusion import degradations as D
    from defusion.metrics import psnr

    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    smooth = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.3 * xx * yy], -1).astype(np.float32)
    noisy = D.parse("noise25").apply(smooth, np.random.default_rng(0))
    out = pipe(noisy, degradation="noise", output_type="np").images[0]
    assert psnr(out, smooth, None) > psnr(noisy, smooth, None) + 3


def test_restore_holds_8_bit_pixels_as_uint8():
    from defusion.cli import _compact

    u8 = np.random.default_rng(0).integers(0, 256, (300, 20, 3), dtype=np.uint8)
    exact = _compact(u8.astype(np.float32) / 255.0)
    assert exact.dtype == np.uint8 and np.array_equal(exact, u8)
    deep = np.random.default_rng(0).random((300, 20, 3)).astype(np.float32)  # 16-bit or composited: kept as floats
    assert _compact(deep) is deep
