"""Compact weight storage: int8 per output channel, shared components, the tokenizer without its decoder."""

import json

import pytest
import torch
from safetensors.torch import load_file

from defusion.models import DefusionUNet, DegradationTokenizer
from defusion.models.compact import (
    COMPACT_FILE,
    SCALE,
    compact_folder,
    dequantize_state_dict,
    quantize_state_dict,
)
from defusion.perception import DegradationIdentifier


def test_quantize_round_trip_error_is_half_a_step_per_channel():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 8, 3, 3, generator=g) * torch.logspace(-3, 1, 16).view(-1, 1, 1, 1)
    state = {"conv.weight": w, "conv.bias": torch.randn(16, generator=g), "small": torch.randn(4, 4, generator=g)}
    stored = quantize_state_dict(state, min_numel=64)
    assert stored["conv.weight"].dtype == torch.int8 and stored["conv.weight" + SCALE].shape == (16,)
    assert stored["conv.bias"].dtype == torch.float32 and "small" + SCALE not in stored  # small / 1-d: as they are
    back = dequantize_state_dict(stored)
    step = w.abs().flatten(1).amax(1) / 127  # each channel's own step: small channels keep their precision
    assert ((back["conv.weight"] - w).abs().flatten(1).amax(1) <= step / 2 + 1e-9).all()
    assert torch.equal(back["conv.bias"], state["conv.bias"])
    kept = quantize_state_dict(state, min_numel=64, keep=("conv.",))
    assert kept["conv.weight"].dtype == torch.float32


def test_reserved_suffix_is_refused():
    with pytest.raises(ValueError, match="reserved"):
        quantize_state_dict({"w" + SCALE: torch.zeros(2)})


def test_compact_folder_loads_through_from_pretrained(tmp_path):
    torch.manual_seed(0)
    unet = DefusionUNet.from_preset("tiny").eval()
    unet.save_pretrained(tmp_path / "unet")
    sizes = compact_folder(tmp_path / "unet")
    assert sizes["after"] < sizes["before"]  # tiny: few weights reach MIN_NUMEL; the shipped unet halves
    assert any(v.dtype == torch.int8 for v in load_file(str(tmp_path / "unet" / COMPACT_FILE)).values())
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["config.json", COMPACT_FILE]
    back = DefusionUNet.from_pretrained(tmp_path, subfolder="unet")
    assert back.dtype == torch.float32 and not back.training
    assert DefusionUNet.from_pretrained(tmp_path / "unet", torch_dtype=torch.float16).dtype == torch.float16
    ref, got = unet.state_dict(), back.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        tol = ref[k].abs().max() / 127 / 2 + 1e-7 if k + SCALE in load_file(str(tmp_path / "unet" / COMPACT_FILE)) else 0
        assert (ref[k] - got[k]).abs().max() <= tol, k
    with pytest.raises(FileNotFoundError):
        compact_folder(tmp_path / "unet")  # already compact: nothing standard left to convert


def test_shared_weights_keep_their_own_config(tmp_path):
    torch.manual_seed(0)
    ident = DegradationIdentifier.from_preset("tiny")
    ident.save_pretrained(tmp_path / "a" / "identifier")
    other = DegradationIdentifier.from_config(ident.config, threshold=0.7)
    other.save_config(tmp_path / "b" / "identifier")
    (tmp_path / "b" / "identifier" / "shared_weights.json").write_text(json.dumps({"folder": "../../a/identifier"}))
    back = DegradationIdentifier.from_pretrained(tmp_path / "b", subfolder="identifier")
    assert back.config.threshold == 0.7
    for k, v in ident.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])


def test_tokenizer_without_decoder_tokenizes_the_same():
    torch.manual_seed(0)
    tok = DegradationTokenizer.from_preset("tiny").eval()
    lean = tok.without_decoder()
    assert lean.vq.decoder is None and sum(p.numel() for p in lean.parameters()) < sum(p.numel() for p in tok.parameters())
    x, null = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(tok.tokenize(x, null=null), lean.tokenize(x, null=null))
    with pytest.raises(ValueError, match="without its decoder"):
        lean.reconstruct(x)


def test_shipped_folders_are_compact():
    from defusion.weights import WEIGHTS

    assert (WEIGHTS / "defusion-small" / "unet" / COMPACT_FILE).is_file()
    assert json.loads((WEIGHTS / "defusion-small" / "degradation_tokenizer" / "config.json").read_text())["with_decoder"] is False
    assert (WEIGHTS / "dfpir-small" / "identifier" / "shared_weights.json").is_file()
