"""The batched torch degradations against their numpy twins (defusion.degradations.batched)."""

import numpy as np
import pytest
import torch

from defusion import degradations as D
from defusion.degradations import batched as B
from defusion.images import load_image

DETERMINISTIC = ("blur", "defocus", "resize", "jpeg")
ZERO_MEAN = ("noise", "poisson", "motion_blur", "raindrop")  # residual mean ~ 0: compare its spread only


@pytest.fixture(scope="module")
def tiles():
    from importlib.resources import files

    img = load_image(files("defusion") / "assets" / "coffee.png")
    h, w = img.shape[:2]
    rng = np.random.default_rng(0)
    out = [img[y : y + 96, x : x + 96] for y, x in zip(rng.integers(0, h - 96, 40), rng.integers(0, w - 96, 40))]
    return np.stack(out)


def _both(spec, tiles):
    ref = np.stack([spec.apply(t, rng=i) for i, t in enumerate(tiles)])
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
    got = B.apply_batch(x, [spec] * len(tiles), torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).numpy()
    return ref, got


def test_every_registered_degradation_has_a_batched_operator():
    assert sorted(B.OPS) == D.names()


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("severity", [0.3, 0.8])
def test_deterministic_operators_match_numpy(name, severity, tiles):
    spec = D.get(name).from_severity(severity, np.random.default_rng(1))
    ref, got = _both(spec, tiles[:8])
    psnr = -10 * np.log10(np.mean((ref - got) ** 2, axis=(1, 2, 3)) + 1e-12)
    assert psnr.min() >= 35.0, (spec, psnr)


@pytest.mark.parametrize("name", sorted(set(D.names()) - set(DETERMINISTIC)))
def test_random_operators_match_numpy_statistics(name, tiles):
    for seed in (0, 1):
        spec = D.get(name).from_severity(0.6, np.random.default_rng(seed))
        if name == "raindrop":  # few large drops per tile: smaller, more of them, more tiles for a stable figure
            spec, tiles = D.Raindrop(count=120.0, radius=6.0 + 2 * seed, blur=2.0), np.concatenate([tiles] * 8)
        ref, got = _both(spec, tiles)
        r, g = ref - tiles, got - tiles
        # raindrop: each drop is the numpy one exactly (test below), but a few hundred drops of random size decide
        # the statistics: the numpy operator's own spread across seeds is +-5 % here, so 12 %
        tol = 0.12 if name == "raindrop" else 0.05
        assert abs(g.std() / r.std() - 1) <= tol, (spec, g.std(), r.std())
        if name in ZERO_MEAN:
            assert abs(np.abs(g).mean() / np.abs(r).mean() - 1) <= tol, spec
        else:
            assert abs(g.mean() / r.mean() - 1) <= 0.05, (spec, g.mean(), r.mean())


def test_apply_batch_composes_in_order_and_leaves_none_alone(tiles):
    x = torch.from_numpy(tiles[:3]).permute(0, 3, 1, 2).contiguous()
    specs = [D.parse("blur2+jpeg20"), None, D.parse("jpeg20+blur2")]
    out = B.apply_batch(x, specs, torch.Generator().manual_seed(0))
    assert torch.equal(out[1], x[1])
    for i in (0, 2):
        ref = torch.from_numpy(specs[i].apply(tiles[i])).permute(2, 0, 1)
        assert -10 * torch.log10(((out[i] - ref) ** 2).mean()) > 35
    assert not torch.allclose(out[0], out[2])


def test_apply_batch_is_seeded_grey_capable_and_checks_its_input(tiles):
    x = torch.from_numpy(tiles[:4]).permute(0, 3, 1, 2).contiguous()
    specs = [D.parse(n) for n in ("noise25", "rain", "snow+haze", "low_light")]
    a = B.apply_batch(x, specs, torch.Generator().manual_seed(5))
    b = B.apply_batch(x, specs, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    grey = B.apply_batch(x[:, :1], [D.parse(n) for n in ("jpeg10", "underwater", "haze", "raindrop")])
    assert grey.shape == (4, 1, 96, 96)
    with pytest.raises(ValueError, match="one spec per image"):
        B.apply_batch(x, specs[:2])


def test_one_raindrop_is_the_numpy_drop(monkeypatch):
    """With the same five draws (radius, elongation, centre, magnification) both paint the same drop."""
    draws = [0.3, 0.5, 0.4, 0.6, 0.2]
    img = np.zeros((128, 128, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = np.linspace(0, 1, 128)[None], np.linspace(0, 1, 128)[:, None], 0.5

    class Fixed:
        i = 0

        def uniform(self, lo, hi):
            self.i += 1
            return lo + (hi - lo) * draws[self.i - 1]

    spec = D.Raindrop(count=16.0, radius=10.0, blur=0.0)  # one drop on 128 x 128
    ref = spec._apply(img, Fixed())
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.tensor(draws).view(1, 1, 5).expand(*shape).clone())
    got = B.OPS["raindrop"](torch.from_numpy(img).permute(2, 0, 1)[None], B.params_of([spec], "cpu"), None)
    assert (np.abs(ref - img).max(-1) > 1e-3).sum() > 100
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), ref, atol=1e-5)
