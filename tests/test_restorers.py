"""Regression restorers: exact parameter counts of the paper configs, shapes, gradients."""

import pytest
import torch

from defusion.models import PromptIR, Restormer
from defusion.models.restormer import MDTA, LayerNorm2d


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_restormer_paper_parameter_counts():
    assert n_params(Restormer.from_preset("paper")) == 26_126_644
    assert n_params(Restormer.from_preset("paper", bias_free_norm=True)) == 26_111_668


def test_promptir_paper_parameter_count():
    m = PromptIR.from_preset("paper")
    # 35,592,263 in the reference code, which also builds six 1x1 convs (215,296 params) it never uses
    assert n_params(m) == 35_376_967
    assert [n_params(getattr(m, f"prompt{i}")) for i in (1, 2, 3)] == [1_348_069, 803_781, 1_333_125]


@pytest.mark.parametrize("cls", [Restormer, PromptIR])
def test_tiny_forward_backward_and_residual(cls):
    torch.manual_seed(0)
    m = cls.from_preset("tiny")
    x = torch.rand(2, 3, 24, 40) * 2 - 1
    y = m(x)
    assert y.shape == x.shape
    y.abs().mean().backward()
    assert all(p.grad is not None for p in m.parameters())
    with torch.no_grad():  # the output conv at zero leaves the global residual: the identity
        m.output.weight.zero_()
        torch.testing.assert_close(m(x), x)
    with pytest.raises(ValueError, match="multiple of 8"):
        m(torch.rand(1, 3, 20, 20))


def test_layernorm_variants_and_mdta():
    x = torch.randn(2, 6, 5, 7)
    with_bias = LayerNorm2d(6)(x)
    torch.testing.assert_close(with_bias.mean(1), torch.zeros(2, 5, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(with_bias.var(1, unbiased=False), torch.ones(2, 5, 7), atol=1e-3, rtol=0)
    free = LayerNorm2d(6, bias_free=True)(x)  # no mean subtraction: the mean survives
    assert free.mean(1).abs().max() > 0.05
    attn = MDTA(8, 2)
    assert attn.temperature.shape == (2, 1, 1)
    assert attn(torch.randn(1, 8, 6, 6)).shape == (1, 8, 6, 6)


def test_save_load_round_trip(tmp_path):
    m = PromptIR.from_preset("tiny")
    m.save_pretrained(tmp_path / "m")
    back = PromptIR.from_preset("tiny").from_pretrained(tmp_path / "m")
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(m(x), back(x))
