"""Defusion models and pipeline on tiny configs."""

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

from defusion import DefusionPipeline, VisualInstruction
from defusion import degradations as D
from defusion.diffusion import make_scheduler
from defusion.models import DefusionUNet, ImageRestorationBridge, VisualInstructionAdapter
from defusion.models.unet import PRESETS


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    p = DefusionPipeline.from_preset("tiny")
    # give the zero-initialised bridge heads some weight so that the LQ image matters in these tests
    for h in p.bridge.heads:
        torch.nn.init.normal_(h.weight, std=0.05)
    p.set_progress_bar_config(disable=True)
    return p


def rand_img(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def run(pipe, img, **kw):
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    kw.setdefault("output_type", "np")
    return pipe(img, **kw)


def test_small_preset_sizes():
    unet = DefusionUNet.from_preset("small")
    assert unet.patch_size == 2 and unet.downsample_factor == 16
    assert sum(p.numel() for p in unet.parameters()) == 14_063_500
    assert DefusionUNet.from_preset("paper").patch_size == 1
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from table5 import MINI

    mini = DefusionUNet.from_preset("small", **MINI)  # the Table 5 ablations' size (benchmarks/table5.py)
    assert (mini.patch_size, mini.downsample_factor) == (2, 16)
    assert sum(p.numel() for p in mini.parameters()) == 2_415_932


def test_plain_unet_checkpoint_loads_unchanged(tmp_path):
    torch.manual_seed(0)
    stock = UNet2DConditionModel(**PRESETS["tiny"])
    stock.save_pretrained(tmp_path / "unet")
    ours = DefusionUNet.from_pretrained(tmp_path / "unet")
    for (k, v), (k2, v2) in zip(stock.state_dict().items(), ours.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    x, enc = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8)
    torch.testing.assert_close(ours(x, 10, enc).sample, stock(x, 10, enc).sample, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        ours(torch.randn(1, 3, 15, 16), 10, enc[:1])


def test_zero_bridge_is_identity_and_gets_gradients():
    torch.manual_seed(0)
    unet = DefusionUNet.from_preset("tiny")
    bridge = ImageRestorationBridge.for_unet(unet)
    x, lq, enc = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16), torch.randn(1, 2, 8)
    with torch.no_grad():
        torch.testing.assert_close(unet(x, 5, enc, bridge_features=bridge(lq)).sample, unet(x, 5, enc).sample)
    unet(x, 5, enc, bridge_features=bridge(lq)).sample.square().mean().backward()
    gate_rows = [h.weight.grad[2 * h.weight.shape[0] // 3 :] for h in bridge.heads]
    assert any(g.abs().sum() > 0 for g in gate_rows), "AdaLN-Zero gates must receive gradients at init"
    with pytest.raises(ValueError, match="bridge expects"):
        bridge(torch.randn(1, 4, 16, 16))


def test_adapter_copies_kv_and_is_decoupled(tmp_path):
    torch.manual_seed(0)
    unet = DefusionUNet.from_preset("tiny")
    adapter = VisualInstructionAdapter.from_unet(unet, token_dim=8)
    layers = adapter.config.layer_names
    modules = dict(unet.named_modules())
    for name, k in zip(layers, adapter.to_k_ip):
        assert torch.equal(k.weight, modules[name.rsplit(".processor", 1)[0]].to_k.weight)
    x, text, tok = torch.randn(1, 3, 16, 16), torch.randn(1, 2, 8), torch.randn(1, 5, 8)
    with torch.no_grad():
        plain = unet(x, 3, text).sample
        adapter.attach(unet)
        assert not any("to_k_ip" in k for k in unet.state_dict()), "adapter weights must not live in the U-Net"
        off = unet(x, 3, (text, [adapter(tok)], 0.0)).sample
        on = unet(x, 3, (text, [adapter(tok)])).sample  # no scale given: 1
        half = unet(x, 3, (text, [adapter(tok)], torch.tensor([0.5]))).sample
        assert torch.equal(unet(x, 3, text).sample, plain)  # a plain tensor: text only
    torch.testing.assert_close(off, plain)  # scale 0: exactly the text-only U-Net
    assert (on - plain).abs().max() > 1e-4 and (half - plain).abs().max() > 1e-4 and (half - on).abs().max() > 1e-4
    unet(x, 3, (text, [adapter(tok)])).sample.mean().backward()
    assert adapter.to_k_ip[0].weight.grad is not None and adapter.code_proj[0].weight.grad is not None
    adapter.save_pretrained(tmp_path / "a")
    back = VisualInstructionAdapter.from_pretrained(tmp_path / "a")
    assert all(torch.equal(a, b) for a, b in zip(adapter.state_dict().values(), back.state_dict().values()))
    with pytest.raises(ValueError, match="tokens of shape"):
        adapter(torch.randn(1, 5, 7))


def test_from_unet_reshapes_latent_unet():
    torch.manual_seed(0)
    stock = UNet2DConditionModel(**{**PRESETS["tiny"], "in_channels": 4, "out_channels": 4})
    for p in (1, 2):
        d = DefusionUNet.from_unet(stock, patch_size=p)
        assert d.config.in_channels == 3 * p * p and d.patch_size == p
        k = min(4, 3 * p * p)
        assert torch.equal(d.conv_in.weight[:, :k], stock.conv_in.weight[:, :k])
        assert torch.equal(d.down_blocks[0].resnets[0].conv1.weight, stock.down_blocks[0].resnets[0].conv1.weight)
        assert d(torch.randn(1, 3, 16 * p, 16 * p), 1, torch.randn(1, 1, 8)).sample.shape == (1, 3, 16 * p, 16 * p)
    tok = DefusionPipeline.from_preset("tiny").degradation_tokenizer
    pipe = DefusionPipeline.from_unet(stock, tok, scheduler=make_scheduler("v_prediction"))
    assert pipe.scheduler.config.timestep_spacing == "trailing" and not pipe.scheduler.config.clip_sample


def test_scheduler_settings_and_oracle():
    for pt in ("sample", "v_prediction", "epsilon"):
        s = make_scheduler(pt)
        assert s.config.timestep_spacing == "trailing" and s.config.clip_sample is False
        assert s.config.rescale_betas_zero_snr == (pt != "epsilon")
        s.set_timesteps(4)
        assert s.timesteps.tolist() == [999, 749, 499, 249]
    # an oracle that always predicts the true y0 recovers it in 4 DDIM steps, beyond [-1, 1] (no clipping)
    s = make_scheduler("sample")
    s.set_timesteps(4)
    y0 = torch.linspace(-1.8, 1.8, 48).view(1, 3, 4, 4)
    y = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for t in s.timesteps:
        y = s.step(y0, t, y).prev_sample
    torch.testing.assert_close(y, y0, atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        make_scheduler("x0")


def test_samplers_keep_the_schedule_and_replace_ddim(pipe, tmp_path):
    from defusion.diffusion import SAMPLERS, make_sampler

    img = rand_img(32, 32)
    base = run(pipe, img, num_inference_steps=4).images
    own = pipe.scheduler
    try:
        for name in SAMPLERS:
            pipe.scheduler = make_sampler(name, own)
            cfg = pipe.scheduler.config
            assert cfg.prediction_type == own.config.prediction_type and cfg.beta_schedule == own.config.beta_schedule
            assert cfg.rescale_betas_zero_snr == own.config.rescale_betas_zero_snr
            a, b = run(pipe, img, num_inference_steps=4).images, run(pipe, img, num_inference_steps=4).images
            np.testing.assert_array_equal(a, b)  # deterministic with a seed
            assert np.isfinite(a).all() and a.shape == base.shape
            if name == "ddim":
                np.testing.assert_array_equal(a, base)  # the pipelines' own DDIM, rebuilt
        pipe.scheduler = make_sampler("dpm++", own)
        with pytest.raises(ValueError, match="eta is DDIM's"):
            run(pipe, img, eta=0.5)
        pipe.save_pretrained(tmp_path / "dpm")  # the folder keeps the sampler
        back = DefusionPipeline.from_pretrained(tmp_path / "dpm")
        assert type(back.scheduler) is type(pipe.scheduler) and back.scheduler.config.algorithm_type == "dpmsolver++"
        pipe.scheduler = make_sampler("ddim-leading", own)
        pipe.scheduler.set_timesteps(4)
        assert pipe.scheduler.timesteps.tolist() == [751, 501, 251, 1]
    finally:
        pipe.scheduler = own
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("ddpm", own)


def test_outputs_shape_range_and_types(pipe):
    img = rand_img(37, 45)
    out = run(pipe, img, instruction="rain+noise")
    assert out.images.shape == (1, 37, 45, 3) and out.images.dtype == np.float32
    assert 0 <= out.images.min() and out.images.max() <= 1
    assert out.instructions == ["rain+noise(sigma=25)"]
    pt = run(pipe, torch.from_numpy(img).permute(2, 0, 1), output_type="pt").images
    assert pt.shape == (1, 3, 37, 45)
    np.testing.assert_allclose(pt[0].permute(1, 2, 0).numpy(), run(pipe, img).images[0], atol=1e-6)
    pil = run(pipe, Image.fromarray((img * 255).astype(np.uint8)), output_type="pil").images
    assert isinstance(pil[0], Image.Image) and pil[0].size == (45, 37)


def test_deterministic_with_seed_and_seed_matters(pipe):
    img = rand_img(32, 32)
    a, b = run(pipe, img).images, run(pipe, img).images
    np.testing.assert_array_equal(a, b)
    c = run(pipe, img, generator=torch.Generator().manual_seed(1)).images
    assert np.abs(a - c).max() > 0


def test_batches_lists_grey_and_rgba(pipe):
    imgs = [rand_img(32, 32, 1), rand_img(32, 32, 2), rand_img(20, 28, 3)]
    out = run(pipe, imgs, instruction=["noise", None, VisualInstruction.from_names("haze", size=64)],
              generator=[torch.Generator().manual_seed(i) for i in range(3)])  # fmt: skip
    assert [o.shape for o in out.images] == [(32, 32, 3), (32, 32, 3), (20, 28, 3)]
    assert out.instructions[1] == "none" and out.instructions[2].startswith("haze")
    single = run(pipe, imgs[0], instruction="noise").images[0]
    np.testing.assert_allclose(out.images[0], single, atol=1e-5)  # batching does not change a result
    grey = (np.random.default_rng(0).random((24, 24)) * 255).astype(np.uint8)
    assert run(pipe, Image.fromarray(grey)).images.shape == (1, 24, 24, 3)
    rgba = np.zeros((24, 24, 4), np.uint8)
    assert run(pipe, Image.fromarray(rgba, "RGBA")).images.shape == (1, 24, 24, 3)


def test_bad_inputs_raise_clear_errors(pipe):
    with pytest.raises(ValueError, match="NaN"):
        run(pipe, np.full((16, 16, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="channels"):
        run(pipe, np.zeros((16, 16, 5), np.float32))
    with pytest.raises(ValueError, match="empty"):
        run(pipe, np.zeros((0, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="valid names"):
        run(pipe, rand_img(16, 16), instruction="smog")
    with pytest.raises(ValueError, match="instructions for"):
        run(pipe, [rand_img(16, 16)] * 2, instruction=["rain"])
    with pytest.raises(ValueError, match="prompt_embeds"):
        run(pipe, rand_img(16, 16), prompt_embeds=torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match="num_inference_steps"):
        run(pipe, rand_img(16, 16), num_inference_steps=0)


def test_instruction_changes_output(pipe):
    img = rand_img(32, 32)
    a = run(pipe, img, instruction="rain").images
    b = run(pipe, img, instruction="noise").images
    c = run(pipe, img, instruction=None).images
    assert np.abs(a - b).max() > 1e-4 and np.abs(a - c).max() > 1e-4
    text = run(pipe, img, prompt_embeds=torch.randn(1, 3, 8)).images  # the text branch still works
    assert np.abs(text - c).max() > 1e-4


def test_tiling(pipe):
    small = rand_img(30, 30)
    np.testing.assert_array_equal(run(pipe, small, tile_size=32, tile_overlap=8).images, run(pipe, small, tile_size=None).images)
    img = np.clip(rand_img(64, 96) * 0.1 + np.linspace(0.2, 0.8, 96)[None, :, None], 0, 1).astype(np.float32)
    full = run(pipe, img, tile_size=None, instruction="noise").images[0]
    tiled = run(pipe, img, tile_size=32, tile_overlap=8, instruction="noise").images[0]
    assert np.abs(full - tiled).mean() < 0.05
    # seamless: the jump across a tile border is no larger than jumps between neighbouring columns elsewhere
    col_jumps = np.abs(np.diff(tiled, axis=1)).mean(axis=(0, 2))
    assert col_jumps[23:26].max() < 3 * np.median(col_jumps)
    with pytest.raises(ValueError, match="tile_size"):
        run(pipe, img, tile_size=31)


def test_save_load_round_trip(pipe, tmp_path):
    pipe.register_to_config(noise_scale=0.8)
    try:
        pipe.save_pretrained(tmp_path / "p")
    finally:
        pipe.register_to_config(noise_scale=1.0)
    back = DefusionPipeline.from_pretrained(tmp_path / "p")
    back.set_progress_bar_config(disable=True)
    img = rand_img(32, 40)
    np.testing.assert_allclose(run(back, img, instruction="rain").images, run(pipe, img, instruction="rain").images, atol=1e-5)
    assert back.config.diffusion_space == "degradation" and back.config.ground == "pool"
    assert back.config.noise_estimator == "pca" and back.config.noise_scale == 0.8  # blind mode's settings persist


def test_saved_defaults_for_steps_and_ensemble(pipe, tmp_path):
    img = rand_img(24, 32)
    explicit = run(pipe, img, instruction="noise", num_inference_steps=1, self_ensemble=4).images
    assert (pipe.config.default_steps, pipe.config.default_self_ensemble) == (4, 1)  # the paper's sampler
    np.testing.assert_array_equal(run(pipe, img, instruction="noise").images,
                                  run(pipe, img, instruction="noise", num_inference_steps=4, self_ensemble=1).images)
    pipe.register_to_config(default_steps=1, default_self_ensemble=4)
    try:
        pipe.save_pretrained(tmp_path / "p")
    finally:
        pipe.register_to_config(default_steps=4, default_self_ensemble=1)
    back = DefusionPipeline.from_pretrained(tmp_path / "p")
    back.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(back, img, instruction="noise").images, explicit, atol=1e-5)  # its defaults
    np.testing.assert_allclose(run(back, img, instruction="noise", num_inference_steps=4, self_ensemble=1).images,
                               run(pipe, img, instruction="noise").images, atol=1e-5)  # arguments still win
    for bad in (dict(default_steps=0), dict(default_steps=2.5), dict(default_self_ensemble=3)):
        with pytest.raises(ValueError, match="default_steps|self_ensemble"):
            DefusionPipeline.from_preset("tiny", **bad)


def test_missing_weights_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises((OSError, ValueError)):
        DefusionPipeline.from_pretrained(tmp_path / "empty")


def test_ablation_switches():
    p = DefusionPipeline.from_preset("tiny", diffusion_space="image", ground="blank")
    p.set_progress_bar_config(disable=True)
    inst = p.make_instruction("rain")
    assert inst.ground == "blank" and not np.ptp(inst.null, axis=(0, 1)).any()  # a blank ground: one flat colour
    # a U-Net that predicts y0 = 0 restores the input itself in degradation space (x_LQ - 0) and mid-grey in
    # image space (y0 is the image): the two spaces differ in what the prediction means, not only in shape
    img = rand_img(16, 16)
    torch.nn.init.zeros_(p.unet.conv_out.weight)
    torch.nn.init.zeros_(p.unet.conv_out.bias)
    np.testing.assert_allclose(run(p, img, instruction="rain").images[0], 0.5, atol=1e-6)
    degradation_space = DefusionPipeline(**p.components, diffusion_space="degradation")
    degradation_space.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(degradation_space, img, instruction="rain").images[0], img, atol=1e-6)
    with pytest.raises(ValueError, match="diffusion space"):
        DefusionPipeline.from_preset("tiny", diffusion_space="latent")
    with pytest.raises(ValueError, match="ground"):
        DefusionPipeline.from_preset("tiny", ground="chart")


def test_blind_auto_mode(pipe):
    out = run(pipe, [rand_img(32, 32), rand_img(32, 32, 1)], instruction="auto")
    assert len(out.detected) == 2 and all(isinstance(d, list) for d in out.detected)
    for d, label in zip(out.detected, out.instructions):
        assert label == ("none" if not d else "+".join(k for k, _, _ in d)) or label.startswith(d[0][0])
    pipe.identifier.register_to_config(threshold=0.0)  # everything "detected": the instruction holds every kind
    try:
        found, inst = pipe.identify(rand_img(32, 32))
        assert len(found) == len(pipe.identifier.kinds) and len(inst.spec.steps) == len(found)
        # Gaussian noise gets noise_scale x the estimator's sigma, not the severity head's guess
        flat = np.clip(0.5 + np.random.default_rng(0).normal(0, 20 / 255, (64, 64, 3)), 0, 1).astype(np.float32)
        for est, scale in [("pca", 1.0), ("wavelet", 1.0), ("pca", 0.5)]:
            pipe.register_to_config(noise_estimator=est, noise_scale=scale)
            found, inst = pipe.identify(flat)
            noise = next(st for st in inst.spec.steps if st.name == "noise")
            assert abs(noise.sigma - 20 * scale) < 1.5 * scale, (est, scale, noise.sigma)
            assert dict((k, s) for k, _, s in found)["noise"] == pytest.approx(noise.sigma / 50, abs=1e-3)
    finally:
        pipe.identifier.register_to_config(threshold=0.5)
        pipe.register_to_config(noise_estimator="pca", noise_scale=1.0)
    with pytest.raises(ValueError, match="noise_estimator"):
        DefusionPipeline.from_preset("tiny", noise_estimator="median")
    with pytest.raises(ValueError, match="noise_scale"):
        DefusionPipeline.from_preset("tiny", noise_scale=0.0)
    no_id = DefusionPipeline(**{k: v for k, v in pipe.components.items() if k != "identifier"})
    with pytest.raises(ValueError, match="identifier"):
        run(no_id, rand_img(16, 16), instruction="auto")


def test_text_instruction_path(tiny_clip, tmp_path):
    from transformers import CLIPTextModel, CLIPTokenizer

    from defusion.instructions import text_instruction

    enc, tok = CLIPTextModel.from_pretrained(tiny_clip[0]), CLIPTokenizer.from_pretrained(tiny_clip[1])
    torch.manual_seed(0)
    p = DefusionPipeline.from_preset("tiny")
    p.register_modules(text_encoder=enc, text_tokenizer=tok)
    p.set_progress_bar_config(disable=True)
    img = rand_img(16, 16)
    assert text_instruction(D.parse("rain+noise")) == "remove rain, noise"
    a = run(p, img, prompt="remove rain", instruction_scale=0.0).images
    b = run(p, img, prompt="remove snow", instruction_scale=0.0).images
    assert np.abs(a - b).max() > 1e-5  # the text reaches the U-Net
    p.save_pretrained(tmp_path / "p")
    back = DefusionPipeline.from_pretrained(tmp_path / "p")
    back.set_progress_bar_config(disable=True)
    assert back.adapter.config.scale == 1.0  # a per-call scale is not saved
    p.adapter.register_to_config(scale=0.0)  # a text-instruction model: the visual branch off by default
    p.save_pretrained(tmp_path / "text")
    back = DefusionPipeline.from_pretrained(tmp_path / "text")
    back.set_progress_bar_config(disable=True)
    assert back.adapter.config.scale == 0.0
    np.testing.assert_allclose(run(back, img, prompt="remove rain").images, a, atol=1e-5)
    plain = DefusionPipeline.from_preset("tiny")
    with pytest.raises(ValueError, match="text_encoder"):
        run(plain, img, prompt="remove rain")


def test_modulate_skip_flag(tmp_path):
    import json

    torch.manual_seed(0)
    unet = DefusionUNet.from_preset("tiny")
    bridge = ImageRestorationBridge.for_unet(unet)
    assert bridge.config.modulate_skip is True  # new bridges: level 0 modulated before its skip
    for h in bridge.heads:
        torch.nn.init.normal_(h.weight, std=0.1)
    x, lq, enc = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16), torch.randn(1, 2, 8)
    with torch.no_grad():
        feats = bridge(lq)
        early = unet(x, 5, enc, bridge_features=feats, modulate_skip=True).sample
        late = unet(x, 5, enc, bridge_features=feats, modulate_skip=False).sample
    assert not torch.allclose(early, late)
    # a bridge config saved before the option existed loads as False (how those checkpoints were trained)
    bridge.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.pop("modulate_skip")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert ImageRestorationBridge.from_pretrained(tmp_path).config.modulate_skip is False


def test_bridge_res_blocks_round_trip_and_old_layout(tmp_path):
    torch.manual_seed(0)
    unet = DefusionUNet.from_preset("tiny")
    one = ImageRestorationBridge.for_unet(unet)
    deep = ImageRestorationBridge.for_unet(unet, feature_channels=[16, 8], num_res_blocks=3)
    # one block per level keeps the pre-option key layout (blocks.<level>.block...), so old checkpoints load
    assert "blocks.0.block.2.weight" in one.state_dict()
    per_block = sum(p.numel() for p in one.blocks[1].parameters())
    level1 = sum(p.numel() for p in deep.blocks[1].parameters())
    assert level1 == 3 * per_block
    deep.save_pretrained(tmp_path)
    back = ImageRestorationBridge.from_pretrained(tmp_path)
    assert back.config.num_res_blocks == 3 and list(back.config.feature_channels) == [16, 8]
    lq = torch.randn(1, 3, 16, 16)
    out, out_back = deep(lq), back(lq)
    assert len(out) == len(unet.encoder_channels)
    for level, (triple, triple_back, ch) in enumerate(zip(out, out_back, unet.encoder_channels)):
        for a, b in zip(triple, triple_back):  # scale, shift, gate: one map per U-Net level, bit-exact after reload
            assert a.shape == (1, ch, 16 >> level, 16 >> level) and torch.equal(a, b)
    with pytest.raises(ValueError, match="num_res_blocks"):
        ImageRestorationBridge.for_unet(unet, num_res_blocks=0)


def test_ensemble_plan_mixes_orientations_and_grid_phases():
    from defusion.ensemble import ENSEMBLE_SIZES, ensemble_passes, ensemble_plan, ensemble_unview, ensemble_view

    full = ensemble_plan(32)
    assert len(set(full)) == 32  # every (dihedral mode, one-pixel shift) pair once
    assert {m for m, _, _ in full} == set(range(8)) and {(dy, dx) for _, dy, dx in full} == {(0, 0), (1, 1), (0, 1), (1, 0)}
    for n in ENSEMBLE_SIZES:
        plan = ensemble_plan(n)
        assert plan == full[:n] and plan[0] == (0, 0, 0)  # prefixes; the first pass is the plain image
        assert len({m for m, _, _ in plan}) == min(n, 8) and len({(dy, dx) for _, dy, dx in plan}) == min(n, 4)
    x = torch.from_numpy(rand_img(5, 7)).permute(2, 0, 1)[None]
    for view in full:
        v = ensemble_view(x, *view)
        h, w = (7, 5) if view[0] % 2 else (5, 7)  # odd modes rotate by 90 or 270 degrees
        assert v.shape[-2:] == (h + view[1], w + view[2])
        assert torch.equal(ensemble_unview(v, *view), x)
    one_px = torch.rand(1, 3, 1, 1)  # too small to reflect: replicated
    assert torch.equal(ensemble_unview(ensemble_view(one_px, 1, 1, 1), 1, 1, 1), one_px)
    assert (ensemble_passes(False), ensemble_passes(True), ensemble_passes(4)) == (1, 8, 4)
    for bad in (3, 0, 64, 2.0, "8"):
        with pytest.raises(ValueError, match="self_ensemble"):
            ensemble_passes(bad)


def test_ensemble_plan_keeps_to_the_allowed_views():
    from defusion.ensemble import ensemble_plan

    full = ensemble_plan(32)
    for modes, shifts in (((0, 2, 4, 6), True), ((0, 4), True), ((0, 4), False), ((0,), False)):
        plan = ensemble_plan(32, modes=modes, shifts=shifts)
        assert plan == [v for v in full if v[0] in modes and (shifts or v[1:] == (0, 0))]  # the full plan's order
        assert len(plan) == len(modes) * (4 if shifts else 1) and plan[0] == (0, 0, 0)
        assert ensemble_plan(4, modes=modes, shifts=shifts) == plan[:4]
    haze4 = ensemble_plan(4, modes=(0, 4))
    assert {m for m, _, _ in haze4} == {0, 4} and len({v[1:] for v in haze4}) == 2  # flips and grid phases mixed
    for bad in ((), (8,), (-1, 0)):
        with pytest.raises(ValueError, match="modes"):
            ensemble_plan(4, modes=bad)


def test_self_ensemble_skips_views_the_degradation_is_not_invariant_to(pipe):
    from defusion.ensemble import ensemble_plan, ensemble_unview, ensemble_view

    x = torch.from_numpy(rand_img(20, 28)).permute(2, 0, 1)
    kw = dict(output_type="pt")
    for name, modes, shifts in (("rain", (0, 2, 4, 6), True), ("haze+noise", (0, 4), True)):
        views = ensemble_plan(4, modes=modes, shifts=shifts)
        assert pipe.ensemble_views(4, [pipe.make_instruction(name)]) == views
        manual = sum(ensemble_unview(run(pipe, ensemble_view(x, *v), instruction=name, **kw).images[0], *v)
                     for v in views) / len(views)  # fmt: skip
        ens = run(pipe, x, instruction=name, self_ensemble=4, **kw).images[0]
        torch.testing.assert_close(ens, manual, atol=1e-5, rtol=0)
    # JPEG's block grid allows no other view: the ensemble is the plain pass
    plain = run(pipe, x, instruction="jpeg10", **kw).images[0]
    torch.testing.assert_close(run(pipe, x, instruction="jpeg10", self_ensemble=8, **kw).images[0], plain, atol=0, rtol=0)
    # no instruction, or Gaussian noise alone: all 8 rotations/flips
    assert pipe.ensemble_views(8, [None]) == pipe.ensemble_views(8, [pipe.make_instruction("noise")]) == ensemble_plan(8)


def test_self_ensemble_averages_its_views(pipe):
    from defusion.ensemble import ensemble_plan, ensemble_unview, ensemble_view

    x = torch.from_numpy(rand_img(20, 28)).permute(2, 0, 1)
    kw = dict(output_type="pt")
    for n, arg in ((8, True), (4, 4)):
        views = ensemble_plan(n)
        manual = sum(ensemble_unview(run(pipe, ensemble_view(x, *v), **kw).images[0], *v) for v in views) / n
        ens = run(pipe, x, self_ensemble=arg, **kw).images[0]
        assert ens.shape == x.shape
        torch.testing.assert_close(ens, manual, atol=1e-5, rtol=0)
    plain = run(pipe, x, **kw).images[0]
    assert (ens - plain).abs().max() > 1e-4
    torch.testing.assert_close(run(pipe, x, self_ensemble=1, **kw).images[0], plain, atol=0, rtol=0)
    torch.testing.assert_close(run(pipe, x, self_ensemble=4, **kw).images[0], ens, atol=0, rtol=0)  # seeded
    with pytest.raises(ValueError, match="self_ensemble"):
        run(pipe, x, self_ensemble=3)


def test_instruction_tokens_are_cached_until_the_tokenizer_changes(pipe):
    inst = pipe.make_instruction("rain+noise", seed=3)
    calls = []
    tokenize = pipe.degradation_tokenizer.tokenize
    pipe.degradation_tokenizer.tokenize = lambda x: calls.append(len(x)) or tokenize(x)
    try:
        first = pipe.encode_instruction([inst, None], "cpu", torch.float32)
        again = pipe.encode_instruction([pipe.make_instruction("rain+noise", seed=3)], "cpu", torch.float32)
        assert calls == [1] and torch.equal(first[0], again[0]) and first[1].abs().max() == 0
        with torch.no_grad():
            p = next(pipe.degradation_tokenizer.parameters())
            p.add_(0.0)  # an in-place change (what an optimizer step does) invalidates the cache
        pipe.encode_instruction([inst], "cpu", torch.float32)
        assert calls == [1, 1]
        pipe.encode_instruction([inst], "cpu", torch.float32)
        assert calls == [1, 1]  # cached again under the new weights
        np.testing.assert_allclose(run(pipe, rand_img(20, 20), instruction=inst).images,
                                   run(pipe, rand_img(20, 20), instruction=inst).images)  # fmt: skip
    finally:
        del pipe.degradation_tokenizer.tokenize
