"""set_precision: the restoring network computes in bfloat16, images and the sampler state stay float32."""

import numpy as np
import pytest
import torch

import defusion.pipelines.loading as loading
from defusion import DefusionPipeline, RestorerPipeline
from defusion.eval.methods import PipelineMethod, load_method


@pytest.fixture
def pipe(tiny_defusion):
    """The shared tiny pipeline, left as found (float32, no warning remembered)."""
    yield tiny_defusion
    tiny_defusion.set_precision("fp32")
    tiny_defusion.__dict__.pop("_warned_emulated", None)


@pytest.fixture(scope="module")
def noisy(photo):
    rng = np.random.default_rng(0)
    return np.clip(photo[:48, :64] + rng.normal(0, 25 / 255, photo[:48, :64].shape), 0, 1).astype(np.float32)


def _restore(pipe, img, precision, seen=None):
    pipe.set_precision(precision)
    hooks = []
    if seen is not None:  # the dtype of what the U-Net's first convolution computes
        hooks.append(pipe.unet.conv_in.register_forward_hook(lambda m, a, o: seen.append(o.dtype)))

    def step_end(p, i, t, kwargs):
        if seen is not None:
            seen.append(("latents", kwargs["latents"].dtype))
        return {}

    try:
        return pipe(img, instruction="noise", num_inference_steps=2, output_type="np", self_ensemble=1,
                    generator=torch.Generator().manual_seed(0), callback_on_step_end=step_end).images[0]  # fmt: skip
    finally:
        pipe.set_precision("fp32")
        for h in hooks:
            h.remove()


def test_precision_defaults_to_fp32_and_rejects_unknown_names(pipe):
    assert DefusionPipeline.from_preset("tiny").precision == "fp32"
    assert pipe.set_precision(" BF16 ") is pipe and pipe.precision == "bf16"
    pipe.set_precision("fp32")
    for bad in ("fp16", "", None, torch.bfloat16):
        with pytest.raises(ValueError, match="precision must be one of"):
            pipe.set_precision(bad)
    assert pipe.precision == "fp32"


def test_bf16_runs_the_network_in_bfloat16_and_the_state_in_float32(pipe, noisy):
    seen32, seen16 = [], []
    ref = _restore(pipe, noisy, "fp32", seen32)
    out = _restore(pipe, noisy, "bf16", seen16)
    assert torch.float32 in seen32 and torch.bfloat16 not in seen32
    assert torch.bfloat16 in seen16 and ("latents", torch.float32) in seen16 and ("latents", torch.bfloat16) not in seen16
    assert out.dtype == np.float32 and out.shape == noisy.shape
    diff = np.abs(out - ref)
    assert 0 < diff.max() < 0.05 and diff.mean() < 0.005  # rounded arithmetic, the same restoration
    assert np.array_equal(_restore(pipe, noisy, "fp32"), ref)  # nothing of bf16 stays behind


def test_auto_uses_bf16_only_where_the_device_computes_it_natively(pipe, noisy, monkeypatch):
    ref, bf16 = _restore(pipe, noisy, "fp32"), _restore(pipe, noisy, "bf16")
    monkeypatch.setattr(loading, "native_bf16", lambda device: False)
    assert np.array_equal(_restore(pipe, noisy, "auto"), ref)
    monkeypatch.setattr(loading, "native_bf16", lambda device: True)
    assert np.array_equal(_restore(pipe, noisy, "auto"), bf16)


def test_bf16_on_a_device_without_it_warns_once(pipe, noisy, monkeypatch, caplog):
    monkeypatch.setattr(loading, "native_bf16", lambda device: False)
    with caplog.at_level("WARNING"):
        _restore(pipe, noisy, "bf16")
        _restore(pipe, noisy, "bf16")
    assert caplog.text.count("no native bfloat16") == 1


def test_native_bf16_says_no_for_devices_it_cannot_use():
    assert loading.native_bf16("meta") is False
    if not torch.cuda.is_available():
        assert loading.native_bf16("cuda") is False
    assert isinstance(loading.native_bf16("cpu"), bool)


def test_restorer_pipeline_runs_its_restorer_in_bfloat16(photo):
    torch.manual_seed(0)
    pipe = RestorerPipeline.from_preset("restormer", "tiny")
    pipe.set_progress_bar_config(disable=True)
    img = np.ascontiguousarray(photo[:32, :48])
    ref = pipe(img, output_type="np").images[0]
    seen = []
    conv = next(m for m in pipe.restorer.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, a, o: seen.append(o.dtype))
    out = pipe.set_precision("bf16")(img, output_type="np").images[0]
    assert seen == [torch.bfloat16] and out.dtype == np.float32
    assert 0 < np.abs(out - ref).max() < 0.05


def test_auto_keeps_restorers_in_float32_and_bf16_warns(photo, monkeypatch, caplog):
    torch.manual_seed(0)
    pipe = RestorerPipeline.from_preset("restormer", "tiny")
    pipe.set_progress_bar_config(disable=True)
    img = np.ascontiguousarray(photo[:32, :48])
    ref = pipe(img, output_type="np").images[0]
    monkeypatch.setattr(loading, "native_bf16", lambda device: True)
    with caplog.at_level("WARNING"):
        pipe.set_precision("auto")
    assert not caplog.records and np.array_equal(pipe(img, output_type="np").images[0], ref)
    with caplog.at_level("WARNING"):
        pipe.set_precision("bf16")
    assert "compare with fp32" in caplog.text


def test_harness_names_select_the_precision(tmp_path):
    torch.manual_seed(0)
    DefusionPipeline.from_preset("tiny").save_pretrained(tmp_path / "pipe")
    folder = str(tmp_path / "pipe")
    plain, fast, both = load_method(folder), load_method(f"{folder}:bf16"), load_method(f"{folder}:instructed:bf16")
    assert all(isinstance(m, PipelineMethod) for m in (plain, fast, both))
    assert (plain.pipe.precision, fast.pipe.precision, both.pipe.precision) == ("fp32", "bf16", "bf16")
    assert both.instruction == "task" and fast.instruction != "task"
    with pytest.raises(ValueError, match="unknown method"):
        load_method(f"{folder}:fp16")
