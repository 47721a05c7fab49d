"""Weighted kinds, the instruction bank and mismatched-instruction samples in the restoration data."""

import numpy as np
import pytest
import torch

from defusion import degradations as D
from defusion.data import InstructionBank, SyntheticDegradationDataset
from defusion.models import DegradationTokenizer


def test_sample_weights_change_frequencies():
    names = [D.sample(i, ["noise", "rain", "haze"], 1, 1.0, weights=[8, 1, 1]).name for i in range(400)]
    assert names.count("noise") > 250
    uniform = [D.sample(i, ["noise", "rain", "haze"], 1, 1.0).name for i in range(400)]
    assert uniform.count("noise") < 200
    with pytest.raises(ValueError, match="positive"):
        D.sample(0, ["noise", "rain"], weights=[1, 0])
    with pytest.raises(ValueError, match="one per kind"):
        D.sample(0, ["noise", "rain"], weights=[1])
    with pytest.raises(ValueError, match="repeat"):
        D.sample(0, ["noise", "noise"])


def test_sample_severity_ranges():
    # a (lo, hi) range for every kind, or per kind with a dict; kinds the dict does not name keep [0.1, 1]
    sig = [D.sample(i, ["noise"], 1, 1.0, (0.4, 0.6)).sigma for i in range(50)]
    assert min(sig) >= 20 and max(sig) <= 30 and max(sig) - min(sig) > 5
    specs = [D.sample(i, ["jpeg", "noise"], 1, 1.0, {"compression": (0.8, 1.0)}) for i in range(200)]
    q = [s.quality for s in specs if s.name == "jpeg"]
    sig = [s.sigma for s in specs if s.name == "noise"]
    assert q and max(q) <= 28 and sig and min(sig) < 15 and max(sig) > 35
    assert D.sample(0, ["noise"], 1, 1.0, 0.5).sigma == 25.0
    for bad in [(0.6, 0.4), (0.2, 1.5), (0.1, 0.2, 0.3), {"jpeg": "x"}]:
        with pytest.raises(ValueError, match="severity"):
            D.sample(0, ["jpeg"], 1, 1.0, bad)
    with pytest.raises(ValueError, match="unknown"):
        D.sample(0, ["jpeg"], 1, 1.0, {"fog_of_war": (0.1, 1.0)})


def test_sample_params_draw_apart_from_severity():
    # low light's noise drawn log-uniformly whatever the darkness; the rest of the spec follows the severity
    draw = {"lowlight": {"noise": (0.1, 12.0, "log")}}
    specs = [D.sample(i, ["low_light"], 1, 1.0, 1.0, params=draw) for i in range(300)]
    noise = np.array([s.noise for s in specs])
    assert all(s.exposure == 0.12 and s.gamma == 2.2 for s in specs)
    assert noise.min() >= 0.1 and noise.max() <= 12.0 and 0.6 < np.median(noise) < 2.0  # log-uniform: median 1.1
    assert (noise < 0.5).mean() > 0.2 and (noise > 6).mean() > 0.05
    assert D.sample(7, ["low_light"], 1, 1.0, params=draw) == D.sample(7, ["low_light"], 1, 1.0, params=draw)
    flat = [D.sample(i, ["low_light"], 1, 1.0, 1.0, params={"low_light": {"noise": (2, 4, "uniform")}}).noise for i in range(50)]
    assert 2 <= min(flat) and max(flat) <= 4 and max(flat) - min(flat) > 1
    # a share: that share of the steps draws the noise, the others keep severity 1's noise 12
    half = np.array([D.sample(i, ["low_light"], 1, 1.0, 1.0, params={"low_light": {"noise": (0.1, 2, "log", 0.5)}}).noise
                     for i in range(200)])  # fmt: skip
    assert set(half[half > 2]) == {12.0} and 0.35 < (half == 12.0).mean() < 0.65
    # kinds without a draw, and no params at all, keep their exact severity draws
    assert [D.sample(i, ["noise", "rain"], 1, 1.0, params=draw) for i in range(20)] == [D.sample(i, ["noise", "rain"], 1, 1.0) for i in range(20)]
    for bad, match in [({"low_light": {"colour": (0, 1, "uniform")}}, "no number parameter"),
                       ({"low_light": {"noise": (3, 1, "uniform")}}, "lo <= hi"),
                       ({"low_light": {"noise": (0, 1, "log")}}, "lo > 0"),
                       ({"low_light": {"noise": (1, 2, "cubic")}}, "scale"),
                       ({"low_light": {"noise": (1, 2, "log", 0)}}, "share"),
                       ({"low_light": {"noise": (1, 500, "uniform")}}, "noise must be in"),
                       ({"fog_of_war": {"noise": (1, 2, "uniform")}}, "unknown")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            D.sample(0, ["low_light"], params=bad)


@pytest.fixture(scope="module")
def tiny_tokenizer():
    torch.manual_seed(0)
    return DegradationTokenizer.from_preset("tiny").eval()


def test_bank_round_trip(tiny_tokenizer, tmp_path):
    bank = InstructionBank.build(tiny_tokenizer, 5, ["noise", "rain"], seed=3, ground_cache=2, batch_size=2)
    assert len(bank) == 5 and bank.ids.dtype == torch.int16 and bank.ids.shape == (5, 2, tiny_tokenizer.num_tokens)
    assert bank.tokens.dtype == torch.float32 and bank.token_shape == (tiny_tokenizer.num_tokens, tiny_tokenizer.token_dim)
    # the tokens are the tokenizer's tokens for that spec's instruction (non-zero: the ground is degraded)
    assert bank.tokens.abs().sum(dim=(1, 2)).min() > 0
    again = InstructionBank.build(tiny_tokenizer, 5, ["noise", "rain"], seed=3, ground_cache=2, batch_size=5)
    assert [s.to_dict() for s in again.specs] == [s.to_dict() for s in bank.specs]
    torch.testing.assert_close(again.tokens, bank.tokens, atol=2e-3, rtol=0)  # batch size does not matter
    bank.save(tmp_path / "bank")
    assert (tmp_path / "bank" / "codes.safetensors").stat().st_size < 4 * bank.tokens.numel()
    loaded = InstructionBank.load(tmp_path / "bank")
    assert [s.to_dict() for s in loaded.specs] == [s.to_dict() for s in bank.specs]
    assert torch.equal(loaded.tokens, bank.tokens)
    got = loaded.lookup(torch.tensor([4, 0]))
    assert got.dtype == torch.float32 and torch.equal(got, bank.tokens[[4, 0]])
    # the codes give exactly what the tokenizer gives for that instruction
    from defusion.data.restoration import cached_ground
    from defusion.instructions import VisualInstruction

    size = max(64, tiny_tokenizer.config.input_size)
    rng = np.random.default_rng([3, 7])
    [D.sample(rng, ["noise", "rain"], 1, 1.0, None, None) for _ in range(5)]  # the specs' draws come first
    g = int(rng.integers(2**31))
    inst = VisualInstruction.from_spec(bank.specs[0], seed=g, size=size, ground=cached_ground("pool", g % 2, size))
    torch.testing.assert_close(bank.tokens[0], tiny_tokenizer.tokenize(inst)[0], atol=1e-6, rtol=0)
    # an older bank stored the tokens themselves
    InstructionBank(bank.specs, tokens=bank.tokens.half()).save(tmp_path / "old")
    assert not (tmp_path / "old" / "codes.safetensors").exists()
    torch.testing.assert_close(InstructionBank.load(tmp_path / "old").lookup(torch.tensor([1])), bank.tokens[[1]], atol=2e-3, rtol=0)
    (tmp_path / "bank" / "specs.json").unlink()
    with pytest.raises(FileNotFoundError, match="specs.json"):
        InstructionBank.load(tmp_path / "bank")
    with pytest.raises(ValueError):
        InstructionBank([], torch.zeros(0, 2, 2, dtype=torch.int16), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="index"):
        InstructionBank(bank.specs, bank.ids.clone().fill_(99), bank.codebook)


def test_dataset_draws_from_the_bank_and_builds_mismatches(photo, tmp_path):
    from defusion.images import save_image

    bank = [D.parse("noise25"), D.parse("rain"), D.parse("haze+noise10")]
    files = [tmp_path / "0.png", tmp_path / "1.png"]
    save_image(photo[:64, :64], files[0])
    save_image(photo[64:128, 64:128], files[1])

    ds = SyntheticDegradationDataset(files, ["noise", "rain", "haze"], crop=32, bank_specs=bank)
    for i in range(2):
        item = ds[i]
        assert "instruction" not in item and not item["mismatch"]
        assert D.from_json(item["spec"]).to_dict() == bank[item["bank_index"]].to_dict()
    always = SyntheticDegradationDataset(files, ["noise", "rain", "haze"], crop=32, bank_specs=bank, p_mismatch=1.0)
    seen = 0
    for epoch in range(6):
        always.set_epoch(epoch)
        for i in range(2):
            item = always[i]
            applied = {s.name for s in D.from_json(item["spec"]).steps}
            shown = {s.name for s in bank[item["bank_index"]].steps}
            if item["mismatch"]:
                seen += 1
                assert not applied & shown
                assert torch.equal(item["gt"], item["lq"])  # a non-matching instruction: the target is the input
            else:  # haze+noise10 has no disjoint entry in this bank: an ordinary sample
                assert applied == {"haze", "noise"}
    assert seen > 0
    # without a bank the mismatched instruction is rendered from kinds the image does not have
    plain = SyntheticDegradationDataset(files, ["noise", "rain"], crop=32, p_mismatch=1.0, ground_cache=2,
                                        instruction_size=64)  # fmt: skip
    item = plain[0]
    assert item["mismatch"] and torch.equal(item["gt"], item["lq"]) and item["instruction"].shape == (3, 64, 64)
    with pytest.raises(ValueError):
        SyntheticDegradationDataset(files, ["noise"], p_mismatch=2.0)


def test_mixture_repeats_draw_new_samples(photo, tmp_path):
    """A dataset repeated r times per epoch gives r different crops/degradations of each image, reproducibly."""
    from defusion.data import MixtureDataset
    from defusion.images import save_image

    files = [tmp_path / "0.png", tmp_path / "1.png"]
    save_image(photo[:64, :64], files[0])
    save_image(photo[64:128, 64:128], files[1])
    ds = SyntheticDegradationDataset(files, ["noise", "rain", "haze"], crop=32)
    mix = MixtureDataset([ds], repeats=[3])
    assert len(mix) == 6
    items = [mix[i] for i in range(len(mix))]
    for i in range(2):  # repeats 0, 1, 2 of image i sit at i, 2 + i, 4 + i
        lqs = [items[k * 2 + i]["lq"] for k in range(3)]
        assert not torch.equal(lqs[0], lqs[1]) and not torch.equal(lqs[1], lqs[2])
    again = MixtureDataset([SyntheticDegradationDataset(files, ["noise", "rain", "haze"], crop=32)], repeats=[3])
    assert all(torch.equal(a["lq"], again[k]["lq"]) for k, a in enumerate(items))
