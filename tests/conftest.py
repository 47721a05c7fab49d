"""Test setup: everything offline, small images, fixed seeds."""

import os

# No test may reach a hub: set before anything imports huggingface_hub / transformers / datasets.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["DIFFUSERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _cpu_quota() -> int | None:
    """CPUs a container's cgroup allows (torch sizes its thread pool by the visible cores, which in a 2-CPU
    container on a large host oversubscribes and slows every test many times over)."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def pytest_configure(config):
    import torch

    quota = _cpu_quota()
    if quota is not None and torch.get_num_threads() > quota:
        torch.set_num_threads(quota)


@pytest.fixture(scope="session")
def photo():
    """A 192 x 256 RGB crop of the bundled clean sample (float32 HWC in [0, 1])."""
    from defusion.assets import sample_path
    from defusion.images import load_image

    img = load_image(sample_path("clean"))
    return np.ascontiguousarray(img[60:252, 120:376])


def psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny random CLIP text encoder (width 8, the tiny U-Net's cross_attention_dim) and a character-level
    CLIP tokenizer, saved to a temp folder so the real loading code runs offline."""
    import json

    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=16).save_pretrained(d / "tokenizer")
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1)  # fmt: skip
    CLIPTextModel(cfg).save_pretrained(d / "text_encoder")
    return d / "text_encoder", d / "tokenizer"


@pytest.fixture
def tiny_sam():
    """A tiny random transformers SAM (256 px input) and its processor."""
    import torch
    from transformers import (SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel, SamProcessor,
                              SamPromptEncoderConfig, SamVisionConfig)  # fmt: skip

    torch.manual_seed(0)
    vc = SamVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, output_channels=16, image_size=256,
                         patch_size=16, global_attn_indexes=[1], window_size=4, mlp_dim=64, num_pos_feats=8)  # fmt: skip
    pc = SamPromptEncoderConfig(hidden_size=16, image_size=256, patch_size=16, mask_input_channels=4)
    dc = SamMaskDecoderConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16)
    model = SamModel(SamConfig(vision_config=vc, prompt_encoder_config=pc, mask_decoder_config=dc))
    proc = SamProcessor(SamImageProcessor(size={"longest_edge": 256}, pad_size={"height": 256, "width": 256}))
    return model, proc


@pytest.fixture(scope="session")
def tiny_defusion():
    """An untrained tiny DefusionPipeline (seed 0), progress bars off; tests must not modify it."""
    import torch

    from defusion import DefusionPipeline

    torch.manual_seed(0)
    p = DefusionPipeline.from_preset("tiny")
    p.set_progress_bar_config(disable=True)
    return p
