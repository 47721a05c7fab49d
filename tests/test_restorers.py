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


def test_dfpir_parameter_count_and_frozen_guidance():
    from defusion.models import DFPIR

    m = DFPIR.from_preset("paper")
    total = n_params(m)
    frozen = sum(p.numel() for p in m.parameters() if not p.requires_grad)
    assert total == 31_104_761  # Restormer 26,126,644 + 4 DGPBs 4,978,117 (1,789,344 in the frozen projections)
    assert frozen == 1_789_344
    assert DFPIR.from_preset("paper").dgpb_latent.guide[0].weight.equal(m.dgpb_latent.guide[0].weight)  # seeded


def test_dfpir_prompt_changes_the_permutation_and_output():
    from defusion.models import DFPIR
    from defusion.perception import DegradationPromptEncoder, prompt_for

    torch.manual_seed(0)
    m = DFPIR.from_preset("tiny")
    enc = DegradationPromptEncoder(dim=16)
    rain, noise = enc.encode(prompt_for("rain")), enc.encode(prompt_for("noise"))
    assert not torch.equal(m.dgpb_latent.permutation(rain), m.dgpb_latent.permutation(noise))
    assert sorted(m.dgpb_latent.permutation(rain)[0].tolist()) == list(range(m.dgpb_latent.expand.out_channels))
    x = torch.rand(1, 3, 16, 16)
    assert (m(x, rain) - m(x, noise)).abs().max() > 0
    m(x, rain).mean().backward()
    assert m.dgpb_latent.guide[0].weight.grad is None  # frozen, as in the reference (no gradient reaches it)
    assert m.dgpb_latent.expand.weight.grad is not None
    with pytest.raises(ValueError, match="prompt_code"):
        m(x)


@pytest.mark.parametrize("name", ["restormer", "promptir", "dfpir"])
def test_restorer_pipeline(name, tmp_path):
    import numpy as np

    from defusion import RestorerPipeline

    torch.manual_seed(0)
    pipe = RestorerPipeline.from_preset(name, "tiny")
    pipe.set_progress_bar_config(disable=True)
    img = np.random.default_rng(0).random((37, 45, 3)).astype(np.float32)  # odd size: padded and cropped back
    out = pipe(img, degradation="rain", output_type="np")
    assert out.images.shape == (1, 37, 45, 3) and out.degradations == ["rain"]
    # tiled == untiled when the image fits in a tile; bounded difference when it does not
    np.testing.assert_array_equal(pipe(img, degradation="rain", output_type="np", tile_size=48).images, out.images)
    tiled = pipe(img, degradation="rain", output_type="np", tile_size=24, tile_overlap=8).images
    assert np.abs(tiled - out.images).mean() < 0.05
    pipe.save_pretrained(tmp_path / "p")
    back = RestorerPipeline.from_pretrained(tmp_path / "p")
    back.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(back(img, degradation="rain", output_type="np").images, out.images, atol=1e-5)
    batch = pipe([img, img[:20, :30]], degradation=["rain", "noise"], output_type="np").images
    assert [b.shape for b in batch] == [(37, 45, 3), (20, 30, 3)]
    if name == "dfpir":
        with pytest.raises(ValueError, match="degradation="):
            pipe(img)
    with pytest.raises(ValueError, match="valid names"):
        pipe(img, degradation="smog")
    with pytest.raises(ValueError, match="identifier"):
        pipe(img, degradation="auto")


def test_restorer_pipeline_auto_uses_the_identifier():
    import numpy as np

    from defusion import RestorerPipeline
    from defusion.perception import DegradationIdentifier

    torch.manual_seed(0)
    ident = DegradationIdentifier.from_preset("tiny")
    ident.register_to_config(threshold=0.0)  # an untrained identifier that reports every kind
    pipe = RestorerPipeline(restorer=RestorerPipeline.from_preset("dfpir", "tiny").restorer, identifier=ident)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(np.random.default_rng(0).random((24, 24, 3)).astype(np.float32), degradation="auto", output_type="np")
    assert out.degradations[0].count("+") == len(ident.kinds) - 1
