"""The diffusers-facing core: one conditioned denoiser, per-call settings, callbacks, the generic loader,
portable saved folders, and what the shipped models do."""

import json
import shutil
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch

from defusion import DefusionPipeline, RestorerPipeline
from defusion import degradations as D
from defusion.metrics import psnr
from defusion.tiling import padded_size
from defusion.models import DefusionDenoiser
from defusion.weights import resolve


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    p = DefusionPipeline.from_preset("tiny")
    for h in p.bridge.heads:  # non-zero heads, so that the low-quality image matters
        torch.nn.init.normal_(h.weight, std=0.05)
    p.set_progress_bar_config(disable=True)
    return p


def rand_img(h=24, w=32, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def run(pipe, img, **kw):
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    return pipe(img, output_type="np", **kw).images


def test_denoiser_is_the_pipelines_forward(pipe):
    """The pipeline's U-Net calls go through its one DefusionDenoiser, which a replaced component rebuilds."""
    d = pipe.denoiser
    assert isinstance(d, DefusionDenoiser) and d is pipe.denoiser and d.unet is pipe.unet
    x, lq = torch.randn(2, 3, 16, 16), torch.rand(2, 3, 16, 16) * 2 - 1
    tokens = torch.randn(2, 5, pipe.adapter.config.token_dim)
    with torch.no_grad():
        out = d(x, torch.tensor([999, 999]), lq, tokens)
        assert out.shape == x.shape
        assert (d(x, 999, lq * 0, tokens) - out).abs().max() > 1e-5  # the LQ image reaches it (bridge)
        assert (d(x, 999, lq, tokens * 0) - out).abs().max() > 1e-5  # so do the tokens (adapter)
        per_sample = d(x, 999, lq, tokens, instruction_scale=torch.tensor([1.0, 0.0]))
        torch.testing.assert_close(per_sample[0], out[0])
        torch.testing.assert_close(per_sample[1], d(x, 999, lq, tokens, instruction_scale=0.0)[1])
    calls = []
    handle = pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        run(pipe, rand_img(), instruction="rain", num_inference_steps=3)
    finally:
        handle.remove()
    assert len(calls) == 3
    other = DefusionPipeline(**pipe.components)
    other.unet = DefusionPipeline.from_preset("tiny").unet
    assert other.denoiser.unet is other.unet and other.denoiser is not d
    with pytest.raises(ValueError, match="instruction_scale"):
        d(x, 999, lq, tokens, instruction_scale=float("nan"))
    with pytest.raises(ValueError, match="does not match"):
        d(x, 999, lq[:1], tokens)


def test_instruction_scale_is_per_call(pipe, tmp_path):
    img = rand_img()
    before = run(pipe, img, instruction="rain")
    off = run(pipe, img, instruction="rain", instruction_scale=0)
    assert np.abs(off - before).max() > 1e-5
    np.testing.assert_array_equal(run(pipe, img, instruction="rain"), before)  # the next call is unchanged
    assert pipe.adapter.config.scale == 1.0
    pipe.save_pretrained(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "adapter" / "config.json").read_text())["scale"] == 1.0
    both = run(pipe, [img, img], instruction="rain", instruction_scale=torch.tensor([0.0, 1.0]),
               generator=[torch.Generator().manual_seed(0) for _ in range(2)])  # fmt: skip
    np.testing.assert_allclose(both[0], off[0], atol=1e-5)
    np.testing.assert_allclose(both[1], before[0], atol=1e-5)
    for bad in (float("nan"), float("inf"), "high", True, torch.ones(3)):
        with pytest.raises(ValueError, match="instruction_scale"):
            run(pipe, [img, img], instruction="rain", instruction_scale=bad)


def test_callback_on_step_end_runs_once_per_step(pipe):
    img = rand_img()
    seen = []

    def record(p, i, t, kwargs):
        seen.append((i, int(t), kwargs["latents"]))
        return {}

    run(pipe, img, instruction="noise", num_inference_steps=4, self_ensemble=1, callback_on_step_end=record)
    assert [(i, t) for i, t, _ in seen] == [(0, 999), (1, 749), (2, 499), (3, 249)]
    # padded with reflected context and to a multiple of the U-Net's downsampling
    padded = padded_size(*img.shape[:2], pipe.multiple, pipe.context_border)
    assert all(isinstance(y, torch.Tensor) and y.shape == (1, 3, *padded) for _, _, y in seen)
    seen.clear()  # with four self-ensemble views: still once per step, with one state per view
    run(pipe, img, instruction="noise", num_inference_steps=2, self_ensemble=4, callback_on_step_end=record)
    assert [i for i, _, _ in seen] == [0, 1] and all(isinstance(y, list) and len(y) == 4 for _, _, y in seen)
    # a callback may replace the state: the last step's y0 set to zero restores the input itself
    last = run(pipe, img, num_inference_steps=1, callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"] * 0})
    np.testing.assert_allclose(last[0], img, atol=1e-6)
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        run(pipe, img, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["prompt_embeds"])


def test_generic_diffusers_loader_and_portable_folders(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "d")
    restorer = RestorerPipeline.from_preset("promptir", "tiny")
    restorer.save_pretrained(tmp_path / "r")
    for folder, cls in ((tmp_path / "d", DefusionPipeline), (tmp_path / "r", RestorerPipeline),
                        (resolve("defusion-small"), DefusionPipeline), (resolve("dfpir-small"), RestorerPipeline)):
        loaded = diffusers.DiffusionPipeline.from_pretrained(folder)
        assert type(loaded) is cls, folder
        index = json.loads((Path(folder) / "model_index.json").read_text())
        assert "_name_or_path" not in index and "tokenizer" not in index
    back = diffusers.DiffusionPipeline.from_pretrained(tmp_path / "d")
    back.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(back, rand_img(), instruction="rain"), run(pipe, rand_img(), instruction="rain"), atol=1e-5)
    back.save_pretrained(tmp_path / "again")  # a loaded pipeline saves no machine-local path either
    for f in (tmp_path / "again").rglob("*.json"):
        assert "_name_or_path" not in json.loads(f.read_text()), f
        assert str(tmp_path) not in f.read_text(), f
    with pytest.raises(ValueError, match="holds a RestorerPipeline"):
        DefusionPipeline.from_pretrained("dfpir-small")
    with pytest.raises(ValueError, match="holds a DefusionPipeline"):
        RestorerPipeline.from_pretrained(tmp_path / "d")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        DefusionPipeline.from_pretrained(tmp_path / "empty")


def test_folders_with_the_old_component_name_still_load(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "new")
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    (tmp_path / "old" / "degradation_tokenizer").rename(tmp_path / "old" / "tokenizer")
    index = json.loads((tmp_path / "old" / "model_index.json").read_text())
    index["tokenizer"] = index.pop("degradation_tokenizer")
    (tmp_path / "old" / "model_index.json").write_text(json.dumps(index))
    old = DefusionPipeline.from_pretrained(tmp_path / "old")
    old.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(old, rand_img(), instruction="noise"), run(pipe, rand_img(), instruction="noise"), atol=1e-5)


def test_fp16_cast_is_quiet(pipe, caplog):
    import logging

    p = DefusionPipeline(**pipe.components)
    with caplog.at_level(logging.WARNING):
        p.to(torch.float16)
    assert not [r for r in caplog.records if "kept in float32" in r.getMessage()]
    assert p.unet.dtype == torch.float16


def _smooth(size=64):
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1.0)
    return np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.3 * xx * yy], -1).astype(np.float32)


def test_shipped_defusion_small_denoises_blind(photo):
    """The shipped default removes sigma-25 noise from a photo crop it never saw, blind, by at least 5 dB."""
    pipe = DefusionPipeline.from_pretrained("defusion-small", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    clean = photo[:96, :128]
    noisy = np.clip(D.parse("noise25").apply(clean, np.random.default_rng(0)), 0, 1)
    out = pipe(noisy, instruction="auto", output_type="np", generator=torch.Generator().manual_seed(0))
    assert "noise" in out.instructions[0]
    assert psnr(out.images[0], clean, None) >= psnr(noisy, clean, None) + 5


def test_every_model_has_the_same_presets():
    from defusion import models as M
    from defusion.models.presets import PresetMixin
    from defusion.perception import DegradationIdentifier

    classes = [M.DefusionUNet, M.DegradationTokenizer, M.Restormer, M.PromptIR, M.DFPIR, M.PerceiveIR, M.ClearAIR,
               DegradationIdentifier]  # fmt: skip
    for cls in classes:
        assert issubclass(cls, PresetMixin) and set(cls.PRESETS) == {"tiny", "small", "paper"}, cls
        with pytest.raises(ValueError, match=f"unknown {cls.__name__} preset 'huge'; choose from"):
            cls.from_preset("huge")
    assert M.Restormer.from_preset("tiny", dim=8).config.dim == 8  # one argument overridden
