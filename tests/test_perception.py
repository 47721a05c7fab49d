"""Perception modules: fallbacks and tiny random "real" backends saved to a temp folder (real loading code)."""

import copy

import numpy as np
import pytest
import torch

from defusion import degradations as D
from defusion.perception import (
    CompactFeatureExtractor,
    Conditioner,
    DegradationIdentifier,
    IQAEmbedding,
    QualityPerceiver,
    RegionMasks,
    SemanticEncoder,
    load_clip,
    quality_loss,
    slic_regions,
)
from defusion.losses import info_nce_loss
from defusion.perception.clip import FALLBACK_CLIP_CONFIG, random_clip, save_open_clip_folder
from defusion.perception.semantic import random_dinov2

SMALL_CLIP = copy.deepcopy(FALLBACK_CLIP_CONFIG)
SMALL_CLIP["vision_cfg"]["image_size"] = 96


def to_batch(imgs):
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() * 2 - 1


# ----------------------------------------------------------------------------------------------- quality prompts


def test_quality_prompts_init_and_real_loading(tmp_path):
    import open_clip

    folder = save_open_clip_folder(random_clip(SMALL_CLIP, seed=3), tmp_path / "clip", SMALL_CLIP)
    model, backend = load_clip(folder)
    assert "local-dir" in backend and not any(p.requires_grad for p in model.parameters())
    qp = QualityPerceiver(model, backend=backend)
    assert qp.ctx.shape == (3, 16, 64)
    # the last context slot starts as the class word's token embedding; the rest is small
    ids = [int(open_clip.tokenize([c])[0, 1]) for c in qp.classes]
    torch.testing.assert_close(qp.ctx[:, -1].detach(), model.token_embedding.weight[ids])
    assert qp.ctx[:, :-1].std() < 0.05
    x = torch.rand(2, 3, 40, 50) * 2 - 1
    loss = quality_loss(qp, x, torch.tensor([0, 2]))
    loss.backward()
    assert qp.ctx.grad is not None and qp.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())  # frozen CLIP with real weights
    qp.save_prompts(tmp_path / "prompts")
    again = QualityPerceiver(load_clip(folder)[0]).load_prompts(tmp_path / "prompts")
    torch.testing.assert_close(again.predict(x), qp.predict(x))
    with pytest.raises(ValueError, match="one BPE token"):
        QualityPerceiver(model, classes=("terrible", "so so", "excellent"))
    with pytest.raises(FileNotFoundError):
        qp.load_prompts(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        load_clip(tmp_path / "empty_dir_that_does_not_exist")


def test_quality_prompt_learner_separates_three_tiers_held_out():
    """Fallback CLIP (random, image tower trained with the prompts): clean / noise 15 / noise 50 on held-out
    visual grounds; chance is 1/3."""
    from visual_grounds import GroundPool

    pool = GroundPool(size=96)

    def tiers(seeds):
        xs, ys = [], []
        for s in seeds:
            g = pool(s)
            rng = np.random.default_rng(s)
            for label, spec in ((0, "noise50"), (1, "noise15"), (2, None)):
                xs.append(g if spec is None else D.parse(spec).apply(g, rng))
                ys.append(label)
        return to_batch(xs), torch.tensor(ys)

    torch.manual_seed(0)
    xtr, ytr = tiers(range(24))
    xte, yte = tiers(range(1000, 1016))
    qp = QualityPerceiver(random_clip(SMALL_CLIP, seed=0), train_image_tower=True, backend="random")
    assert "image tower trained" in qp.backend
    qp.train()
    opt = torch.optim.AdamW(qp.trainable_parameters(), lr=3e-3, weight_decay=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(80):
        idx = torch.randint(0, len(xtr), (24,), generator=gen)
        loss = quality_loss(qp, xtr[idx], ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    qp.eval()
    acc = (qp.predict(xte).argmax(1) == yte).float().mean().item()
    print("held-out accuracy", acc)
    assert acc >= 0.5, acc


def test_fallback_clip_is_labelled():
    qp = QualityPerceiver.from_clip(None)
    assert "random" in qp.backend and qp.train_image_tower


# ---------------------------------------------------------------------------------------------- semantic encoder


def test_semantic_encoder_fallback_and_real_loading(tmp_path):
    enc = SemanticEncoder.fallback()
    x = torch.rand(2, 3, 37, 53) * 2 - 1
    feats = enc(x)
    assert [f.shape for f in feats] == [(2, 32)] * 4 and "random" in enc.backend
    assert not any(p.requires_grad for p in enc.parameters())
    random_dinov2(seed=0).save_pretrained(tmp_path / "dino")
    real = SemanticEncoder.from_pretrained(str(tmp_path / "dino"))
    for a, b in zip(real(x), feats):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="out of range"):
        SemanticEncoder(random_dinov2(), layers=(1, 4, 8, 13))
    with pytest.raises(ValueError, match="expected"):
        enc(torch.rand(2, 1, 32, 32))


# ------------------------------------------------------------------------------------------------ CFE + InfoNCE


def test_cfe_and_info_nce():
    torch.manual_seed(0)
    cfe = CompactFeatureExtractor()
    z = cfe(torch.rand(4, 3, 48, 40))
    assert z.shape == (4, 128)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    a = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    tasks = torch.tensor([0, 0, 1, 1, 2, 2])
    matched = info_nce_loss(a, a, tasks)
    shuffled = info_nce_loss(a, a.roll(1, 0), tasks)
    assert matched < shuffled
    # negatives are only other tasks: a batch of one task has no negatives, so the loss is zero
    assert info_nce_loss(a, a.roll(1, 0), torch.zeros(6, dtype=torch.long)) == 0
    # the temperature is 0.1: one negative, positive cosine 1 vs negative cosine 0 -> log(1 + e^-10)
    e = torch.eye(2)
    torch.testing.assert_close(info_nce_loss(e, e, torch.tensor([0, 1])), torch.log1p(torch.exp(torch.tensor(-10.0))))
    with pytest.raises(ValueError):
        info_nce_loss(a, a[:3], tasks)


# ------------------------------------------------------------------------------------------------ IQA embedding


def test_iqa_embedding_backends(tmp_path):
    from safetensors.torch import save_file

    x = torch.rand(2, 3, 48, 48) * 2 - 1
    ident = DegradationIdentifier.from_preset("tiny")
    e = IQAEmbedding(ident)
    assert e.dim == 58 and e(x).shape == (2, 58)
    save_file({"a.png": torch.ones(7), "b.png": torch.zeros(7)}, str(tmp_path / "cache.safetensors"))
    c = IQAEmbedding(tmp_path / "cache.safetensors")
    assert c.dim == 7 and c(keys=["b.png", "a.png"])[1].sum() == 7
    with pytest.raises(KeyError):
        c(keys=["c.png"])
    with pytest.raises(ValueError, match="keys"):
        c(x)
    qp = QualityPerceiver(random_clip(SMALL_CLIP))
    p = IQAEmbedding(qp)
    assert p(x).shape == (2, p.dim) == (2, 64 + 3)
    f = IQAEmbedding(lambda im: im.mean(dim=(2, 3)), dim=3)
    assert f(x).shape == (2, 3)
    with pytest.raises(TypeError):
        IQAEmbedding(3)
    with pytest.raises(FileNotFoundError):
        IQAEmbedding(tmp_path / "missing.safetensors")


# ------------------------------------------------------------------------------------------------- region masks


def test_slic_regions_partition_the_image(photo, tmp_path):
    m = slic_regions(photo)
    assert m.shape == (16, *photo.shape[:2])
    np.testing.assert_array_equal(m.sum(0), 1)  # disjoint and covering
    areas = m.sum((1, 2))
    assert (areas > 0).sum() <= 16 and (areas[:-1] >= areas[1:]).all()  # largest first
    rm = RegionMasks(cache_dir=tmp_path / "cache")
    x = to_batch([photo[:64, :96]])
    first = rm(x)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    torch.testing.assert_close(rm(x), first)  # served from the cache


def test_region_masks_with_a_tiny_sam_saved_to_disk(photo, tmp_path, tiny_sam):
    model, proc = tiny_sam
    model.save_pretrained(tmp_path / "sam")
    proc.save_pretrained(tmp_path / "sam")
    x = to_batch([photo[:64, :96], photo[64:128, :96]])
    rm = RegionMasks.from_pretrained(tmp_path / "sam", pred_iou_thresh=-1e9)  # keep everything the random SAM finds
    assert rm.backend == "sam"
    m = rm(x)
    assert m.shape == (2, 16, 64, 96) and set(m.unique().tolist()) <= {0.0, 1.0}
    none = RegionMasks.from_pretrained(tmp_path / "sam", pred_iou_thresh=1e9)(x[:1])  # nothing kept
    assert none[0, 0].min() == 1 and none[0, 1:].sum() == 0
    with pytest.raises(ValueError, match="both"):
        RegionMasks(sam_model=model)


# -------------------------------------------------------------------------------------------------- conditioner


def test_conditioner_errors_name_the_missing_module():
    from defusion.models import ClearAIR, PerceiveIR

    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with pytest.raises(ValueError, match="SemanticEncoder"):
        Conditioner()(PerceiveIR.from_preset("tiny"), x)
    cond = Conditioner(semantic_encoder=SemanticEncoder.fallback(), identifier=DegradationIdentifier.from_preset("tiny"))
    kw = cond(ClearAIR.from_preset("tiny"), x)
    assert kw["quality"].shape == (1, 58) and kw["degradation"].shape == (1, 26)
    assert kw["content"].shape == (1, 32) and kw["masks"].shape == (1, 16, 32, 32)


def test_mllm_quality_embedder_with_a_tiny_llava_saved_to_disk(tmp_path):
    """The MLLM path (LLaVA-style, loaded by AutoProcessor + AutoModelForImageTextToText) on a tiny random model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)  # fmt: skip

    from defusion.perception.iqa import MLLMQualityEmbedder

    words = "USER: How would you rate the quality of this image? ASSISTANT: The is".split()
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", "<image>", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", extra_special_tokens={"image_token": "<image>"})  # fmt: skip
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", image_token="<image>",
                               num_additional_image_tokens=1)  # the CLS token, dropped by "default"
    torch.manual_seed(0)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, pad_token_id=0),
        image_token_index=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1,
    )  # fmt: skip
    LlavaForConditionalGeneration(cfg).save_pretrained(tmp_path / "mllm")
    processor.save_pretrained(tmp_path / "mllm")
    emb = MLLMQualityEmbedder.from_pretrained(tmp_path / "mllm")
    x = torch.rand(2, 3, 40, 56) * 2 - 1
    iqa = IQAEmbedding(emb)
    assert iqa.kind == "mllm" and iqa.dim == 16
    out = iqa(x)
    assert out.shape == (2, 16) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # depends on the image


def test_identifier_kind_thresholds(tmp_path):
    torch.manual_seed(0)
    ident = DegradationIdentifier.from_preset("tiny")
    img = np.random.default_rng(0).random((40, 40, 3), dtype=np.float32)
    ident.register_to_config(threshold=0.0)
    everything = {k for k, _, _ in ident.identify(img)}
    assert everything == set(ident.kinds)
    ident.register_to_config(kind_thresholds={"haze": 1.0, "rain": 0.0})
    assert ident.threshold_of("haze") == 1.0 and ident.threshold_of("noise") == 0.0
    assert {k for k, _, _ in ident.identify(img)} == everything - {"haze"}  # only the overridden kind drops out
    ident.save_pretrained(tmp_path / "id")
    back = DegradationIdentifier.from_pretrained(tmp_path / "id")
    assert back.config.kind_thresholds == {"haze": 1.0, "rain": 0.0} and back.threshold_of("haze") == 1.0
    # a threshold that applies only while another kind is reported
    ident.register_to_config(kind_thresholds=None, thresholds_given={"noise": {"rain": 1.0}})
    assert {k for k, _, _ in ident.identify(img)} == everything - {"rain"}
    ident.register_to_config(thresholds_given={"noise": {"rain": 1.0}}, kind_thresholds={"noise": 1.0})
    assert {k for k, _, _ in ident.identify(img)} == everything - {"noise"}  # no noise: rain keeps its threshold
    with pytest.raises(ValueError, match="does not report"):
        DegradationIdentifier(channels=(8, 16), crop=32, thresholds_given={"noise": {"fog": 0.6}})
    with pytest.raises(ValueError, match="does not report"):
        DegradationIdentifier(kinds=["noise"], channels=(8, 16), crop=32, kind_thresholds={"haze": 0.6})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DegradationIdentifier(channels=(8, 16), crop=32, kind_thresholds={"haze": 1.5})


def test_identifier_scene_view():
    import cv2

    torch.manual_seed(0)
    ident = DegradationIdentifier.from_preset("tiny").eval()
    img = np.random.default_rng(1).random((70, 90, 3), dtype=np.float32)
    c, (h, w) = ident.config.crop, img.shape[:2]
    spots = [((h - c) // 2, (w - c) // 2), (0, 0), (0, w - c), (h - c, 0), (h - c, w - c)]
    views = [img[t : t + c, l : l + c] for t, l in spots] + [cv2.resize(img, (c, c), interpolation=cv2.INTER_AREA)]
    with torch.no_grad():
        logits, sev = ident(torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2) * 2 - 1)
    probs = torch.sigmoid(logits)
    p_crops, s_crops = ident.probabilities(img)
    assert torch.allclose(p_crops, probs[:5].mean(0), atol=1e-6) and torch.allclose(s_crops, sev[:5].mean(0), atol=1e-6)
    scene, branches = ["haze", "rain"], set()
    for threshold in (0.0, float(probs[:5].amax(0).min()) + 1e-3, 1.0):
        ident.register_to_config(scene_kinds=scene, threshold=threshold)
        p, s = ident.probabilities(img)
        for i, k in enumerate(ident.kinds):
            # a scene kind takes the scene view where it is more confident and some crop reaches the threshold
            use = k in scene and bool(probs[5, i] > p_crops[i]) and bool(probs[:5, i].max() >= threshold)
            branches |= {use} if k in scene else set()
            assert torch.isclose(p[i], probs[5, i] if use else p_crops[i], atol=1e-6)
            assert torch.isclose(s[i], sev[5, i] if use else s_crops[i], atol=1e-6)
    assert branches == {True, False}  # both ways were checked
    ident.register_to_config(scene_kinds=scene, threshold=0.0)
    assert {k for k, _, _ in ident.identify(img)} == set(ident.kinds)
    with pytest.raises(ValueError, match="does not report"):
        DegradationIdentifier(channels=(8, 16), crop=32, scene_kinds=["fog"])


def test_identifier_decide_and_threshold_sweep():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from identifier_thresholds import best, sweep

    torch.manual_seed(0)
    ident = DegradationIdentifier.from_preset("tiny").eval()
    kinds = ident.kinds
    img = np.random.default_rng(2).random((40, 40, 3), dtype=np.float32)
    assert ident.decide(*ident.probabilities(img)) == ident.identify(img)
    # three made-up views: rain at p 0.3 and at p 0.7, and an image without rain at p 0.4 (all other kinds 0)
    views = []
    for true, p_rain in (("rain", 0.3), ("rain", 0.7), (None, 0.4)):
        p = torch.zeros(len(kinds))
        p[kinds.index("rain")] = p_rain
        views.append((true, p, torch.full((len(kinds),), 0.5)))
    rows = sweep(ident, views, "rain", fa_cost=1.0, miss_cost=1.0, grid=(0.2, 0.35, 0.5, 0.8))
    by = {r["threshold"]: r for r in rows}
    assert [by[t]["hits"] for t in (0.2, 0.35, 0.5, 0.8)] == [2, 1, 1, 0]
    assert [by[t]["false_alarms"] for t in (0.2, 0.35, 0.5, 0.8)] == [1, 1, 0, 0]
    assert by[0.5]["cost"] == pytest.approx(1 / 3) and by[0.2]["cost"] == pytest.approx(1 / 3)
    assert best(rows) == 0.5  # a tie keeps the higher threshold
    assert best(sweep(ident, views, "rain", fa_cost=0.1, miss_cost=1.0, grid=(0.2, 0.5))) == 0.2  # misses dearer
    assert ident.config.kind_thresholds is None  # the sweep leaves the config as it was
    # a threshold given another kind still applies inside the sweep
    views[1][1][kinds.index("noise")] = 0.9
    ident.register_to_config(thresholds_given={"noise": {"rain": 0.9}})
    assert sweep(ident, views, "rain", 1.0, 1.0, grid=(0.2,))[0]["hits"] == 1
