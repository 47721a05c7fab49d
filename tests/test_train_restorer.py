"""train_restorer.py on CPU with tiny presets: every model trains, loss falls, resume works."""

import json
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


@pytest.mark.parametrize("model", ["restormer", "promptir", "dfpir", "perceive_ir", "clearair"])
def test_each_model_trains_and_saves_a_pipeline(model, clean_dir, tmp_path):
    hist = main(parse_args(args(clean_dir, tmp_path, model, 3, "--kind_repeats", "3,1,1", "--use_ema")))
    assert len(hist) == 3 and all(np.isfinite(h["loss"]) for h in hist)
    assert {"val_psnr/noise", "val_psnr/rain", "val_psnr/haze"} <= set(hist[-1])
    assert hist[-1]["val_unchanged/noise"] == 0 and np.isfinite(hist[-1]["val_psnr_input/noise"])
    assert 5 < hist[-1]["val_psnr_input/noise"] < 40 and 5 < hist[-1]["val_psnr/noise"] < 60
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
    rows = [json.loads(r) for r in (tmp_path / "train_history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # each step once across the two runs


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        parse_args(["--model", "restormer", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        parse_args(["--model", "swinir", "--output_dir", str(tmp_path), "--clean_dirs", "x"])


def test_too_few_samples_for_one_batch_fail_instead_of_spinning(clean_dir, tmp_path):
    # 4 training images of one kind cannot fill a batch of 8 with drop_last: a clear error, not an endless loop
    with pytest.raises(ValueError, match="fewer than one batch"):
        main(parse_args(args(clean_dir, tmp_path, "restormer", 2, "--kinds", "noise", "--train_batch_size", "8")))


def test_second_stage_from_a_saved_pipeline(clean_dir, tmp_path):
    main(parse_args(args(clean_dir, tmp_path / "a", "dfpir", 1)))
    hist = main(parse_args(args(clean_dir, tmp_path / "b", "dfpir", 1, "--pretrained_pipeline", str(tmp_path / "a" / "pipeline"),
                                "--learning_rate", "1e-5")))  # fmt: skip
    assert len(hist) == 1
    with pytest.raises(ValueError, match="not promptir"):
        main(parse_args(args(clean_dir, tmp_path / "c", "promptir", 1, "--pretrained_pipeline", str(tmp_path / "a" / "pipeline"))))


def test_perceive_ir_with_all_its_losses(clean_dir, tmp_path):
    """InfoNCE, the CLIP-aware loss (prompts on the fallback CLIP) and the difficulty-adaptive perceptual loss
    (VGG16 features from a local file, a saved pipeline as the hard-negative proxy)."""
    import torch
    from torchvision.models import vgg16

    from defusion.perception import QualityPerceiver

    torch.manual_seed(0)
    QualityPerceiver.from_clip(None).save_prompts(tmp_path / "prompts")
    torch.save({f"features.{k}": v for k, v in vgg16(weights=None).features.state_dict().items()}, tmp_path / "vgg.pth")
    main(parse_args(args(clean_dir, tmp_path / "proxy", "restormer", 1)))
    hist = main(parse_args(args(clean_dir, tmp_path / "p", "perceive_ir", 2, "--quality_prompts", str(tmp_path / "prompts"),
                                "--vgg16", str(tmp_path / "vgg.pth"), "--proxy_pipelines", str(tmp_path / "proxy" / "pipeline"),
                                "--probe_every", "1")))  # fmt: skip
    assert {"info_nce", "clip", "dpl"} <= set(hist[-1]) and all(np.isfinite(hist[-1][k]) for k in ("info_nce", "clip", "dpl"))
    from defusion import RestorerPipeline

    pipe = RestorerPipeline.from_pretrained(tmp_path / "p" / "pipeline")
    assert type(pipe.semantic_encoder).__name__ == "Dinov2Model"


def test_clearair_records_its_icrm_loss(clean_dir, tmp_path):
    hist = main(parse_args(args(clean_dir, tmp_path, "clearair", 2, "--region_cache", str(tmp_path / "regions"))))
    assert all("icrm" in h and h["icrm"] >= 0 for h in hist)
    assert list((tmp_path / "regions").glob("*.npz"))


def test_clearair_rejects_an_identifier_of_another_size_before_training(clean_dir, tmp_path):
    from defusion.perception import DegradationIdentifier

    DegradationIdentifier.from_preset("small").save_pretrained(tmp_path / "ident")  # 410 values; tiny expects 58
    with pytest.raises(ValueError, match="410-value quality embedding; clearair tiny expects 58"):
        main(parse_args(args(clean_dir, tmp_path / "run", "clearair", 2, "--identifier", str(tmp_path / "ident"))))
    assert not (tmp_path / "run" / "train_history.jsonl").exists()


def test_export_a_restorer_pipeline_compact_or_fp16(tmp_path):
    import torch

    from defusion import RestorerPipeline
    from defusion.images import save_image
    from defusion.perception import DegradationIdentifier
    from defusion.pipelines import pipeline_class
    from export_pipeline import main as export

    torch.manual_seed(0)
    RestorerPipeline.from_preset("dfpir", "tiny").save_pretrained(tmp_path / "run")
    ident = DegradationIdentifier.from_preset("tiny")
    ident.register_to_config(threshold=0.0)  # untrained: report every kind, so blind mode restores
    ident.save_pretrained(tmp_path / "ident")
    for i in range(2):
        save_image(np.random.default_rng(i).random((40, 40, 3)).astype(np.float32), tmp_path / "imgs" / f"{i}.png")
    export(["--pipeline", str(tmp_path / "run"), "--identifier", str(tmp_path / "ident"), "--out", str(tmp_path / "out"),
            "--check_images", str(tmp_path / "imgs")])  # fmt: skip
    assert pipeline_class(tmp_path / "out") is RestorerPipeline
    from safetensors.torch import load_file

    assert RestorerPipeline.from_pretrained(tmp_path / "out").identifier is not None
    stored = load_file(tmp_path / "out" / "restorer" / "diffusion_pytorch_model.int8.safetensors")  # the default
    assert {t.dtype for t in stored.values()} <= {torch.float16, torch.int8, torch.float32} and any(
        t.dtype == torch.int8 for t in stored.values())
    report = json.loads((tmp_path / "out" / "export_check.json").read_text())
    assert len(report["stored_vs_fp32_psnr_db"]) == 2 and min(report["stored_vs_fp32_psnr_db"]) > 30
    export(["--pipeline", str(tmp_path / "run"), "--out", str(tmp_path / "fp16"), "--storage", "fp16"])
    stored = load_file(tmp_path / "fp16" / "restorer" / "diffusion_pytorch_model.safetensors")
    assert {t.dtype for t in stored.values()} == {torch.float16}
    with pytest.raises(FileNotFoundError, match="model_index"):
        pipeline_class(tmp_path)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ValueError, match="StableDiffusionPipeline"):
        pipeline_class(tmp_path / "odd")


def test_export_blends_two_pipelines_weight_by_weight(tmp_path):
    import torch

    from defusion import RestorerPipeline
    from export_pipeline import blend_pipelines
    from export_pipeline import main as export

    torch.manual_seed(0)
    a, b = RestorerPipeline.from_preset("dfpir", "tiny"), RestorerPipeline.from_preset("dfpir", "tiny")
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    export(["--pipeline", str(tmp_path / "a"), "--blend_with", str(tmp_path / "b"), "--blend", "0.25",
            "--storage", "fp16", "--out", str(tmp_path / "out")])  # fmt: skip
    got = RestorerPipeline.from_pretrained(tmp_path / "out", dtype=torch.float32).restorer.state_dict()
    wa, wb = a.restorer.state_dict(), b.restorer.state_dict()
    key = next(k for k in wa if wa[k].is_floating_point() and not torch.equal(wa[k], wb[k]))
    torch.testing.assert_close(got[key], (0.25 * wa[key] + 0.75 * wb[key]).half().float())
    report = json.loads((tmp_path / "out" / "export_check.json").read_text())
    assert report["blend"]["t"] == 0.25 and "restorer" in report["blend"]["components"]
    same = RestorerPipeline.from_pretrained(tmp_path / "a", dtype=torch.float32)
    blend_pipelines(same, RestorerPipeline.from_pretrained(tmp_path / "b", dtype=torch.float32), 1.0)
    assert all(torch.equal(v, wa[k]) for k, v in same.restorer.state_dict().items())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend_pipelines(same, b, 1.5)
    with pytest.raises(SystemExit):
        export(["--pipeline", str(tmp_path / "a"), "--blend", "0.5", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
