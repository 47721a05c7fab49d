import json

import numpy as np
import pytest

from defusion import degradations as D
from conftest import psnr

ALL = D.names()
# bound on the PSNR of the degraded image at severity 0.5: each operator must measurably degrade
MAX_PSNR_AT_HALF = 33.0


def test_registry_covers_the_required_operators():
    required = {"noise", "poisson", "blur", "motion_blur", "defocus", "resize", "haze", "rain", "raindrop",
                "snow", "low_light", "jpeg", "underwater"}  # fmt: skip
    assert required <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_sample_apply_deterministic(name, photo):
    cls = D.get(name)
    a = cls.sample(np.random.default_rng(1), 0.5)
    b = cls.sample(np.random.default_rng(1), 0.5)
    assert a == b
    out1 = a.apply(photo, np.random.default_rng(7))
    out2 = a.apply(photo, np.random.default_rng(7))
    np.testing.assert_array_equal(out1, out2)
    assert out1.shape == photo.shape and out1.dtype == np.float32
    assert 0 <= out1.min() and out1.max() <= 1


@pytest.mark.parametrize("name", ALL)
def test_degrades_and_monotonic_in_severity(name, photo):
    cls = D.get(name)
    scores = []
    for s in (0.25, 0.5, 0.75, 1.0):
        # average over a few seeds: nuisance parameters (angles, positions) differ per seed
        scores.append(np.mean([psnr(cls.sample(seed, s).apply(photo, seed + 100), photo) for seed in range(3)]))
    assert scores[1] < MAX_PSNR_AT_HALF, f"{name} at severity 0.5 only reaches {scores[1]:.1f} dB"
    assert all(x > y for x, y in zip(scores, scores[1:])), f"{name} PSNR not decreasing with severity: {scores}"


@pytest.mark.parametrize("name", ALL)
def test_identity_at_severity_zero(name, photo):
    cls = D.get(name)
    out = cls.sample(0, 0.0).apply(photo, 1)
    if cls.identity_at_zero:
        np.testing.assert_array_equal(out, photo)
    else:
        assert psnr(out, photo) > 35.0


@pytest.mark.parametrize("name", ALL)
def test_spec_json_round_trip(name, photo):
    spec = D.get(name).sample(3, 0.7)
    text = json.dumps(spec.to_dict())
    back = D.from_json(text)
    assert back == spec and type(back) is type(spec)
    np.testing.assert_array_equal(back.apply(photo, 0), spec.apply(photo, 0))


@pytest.mark.parametrize("name", ALL)
def test_grayscale_single_channel(name, photo):
    grey = photo.mean(axis=-1, keepdims=True)
    spec = D.get(name).sample(0, 0.6)
    out = spec.apply(grey, 0)
    assert out.shape == grey.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - grey).mean() > 1e-3, "a severity-0.6 degradation must change a grey image"
    if name in ("blur", "defocus", "motion_blur", "resize"):  # per-channel filters: grey = one channel of grey RGB
        np.testing.assert_allclose(out[..., 0], spec.apply(np.repeat(grey, 3, axis=-1), 0)[..., 0], atol=1e-5)


def test_specs_are_frozen():
    spec = D.GaussianNoise(sigma=10)
    with pytest.raises(Exception):
        spec.sigma = 20


def test_gaussian_noise_matches_aio_protocol(photo):
    clean = np.round(photo * 255) / 255
    out = D.GaussianNoise(sigma=25).apply(clean, np.random.default_rng(0))
    assert np.allclose(out * 255, np.round(out * 255), atol=1e-4), "output must lie on the 8-bit grid"
    resid = (out - clean) * 255
    assert abs(resid.std() - 25) < 2.5  # clipping at 0/255 shrinks it slightly


@pytest.mark.parametrize("sigma", [5, 25, 50])
def test_noise_estimators_read_back_sigma(photo, sigma):
    from defusion.noise_level import estimate_noise_sigma

    noisy = D.GaussianNoise(sigma=sigma).apply(photo, np.random.default_rng(1))
    true = float(((noisy - photo) * 255).std())  # what the clipped noise really is
    pca, wav = (255 * estimate_noise_sigma(noisy, method=m) for m in ("pca", "wavelet"))
    assert abs(pca - true) < 0.1 * true + 0.5
    assert abs(pca - true) <= abs(wav - true) + 0.5  # texture reads as noise less often in patch PCA
    # a grey image, also as three identical channels (how the pipelines see it), is not read as noise-free
    grey = D.GaussianNoise(sigma=sigma).apply(photo.mean(axis=-1, keepdims=True), np.random.default_rng(1))
    as_rgb = 255 * estimate_noise_sigma(np.repeat(grey, 3, axis=-1), method="pca")
    assert as_rgb == pytest.approx(255 * estimate_noise_sigma(grey, method="pca"))
    assert abs(as_rgb - sigma) < 0.2 * sigma + 1.0


def test_noise_estimator_edge_cases(photo):
    from defusion.noise_level import estimate_noise_sigma

    assert estimate_noise_sigma(photo[:8, :8], method="pca") >= 0  # patches shrink on tiny images
    flat = np.ones((32, 32, 3), np.float32) * np.array([0.2, 0.5, 0.7], np.float32)
    assert estimate_noise_sigma(flat, method="pca") == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="4 x 4"):
        estimate_noise_sigma(photo[:3, :3], method="pca")
    with pytest.raises(ValueError, match="unknown noise estimator"):
        estimate_noise_sigma(photo, method="median")


def test_compose_order_and_json(photo):
    blur_then_noise = D.Compose([D.GaussianBlur(sigma=2.0), D.GaussianNoise(sigma=20)])
    noise_then_blur = D.Compose([D.GaussianNoise(sigma=20), D.GaussianBlur(sigma=2.0)])
    a, b = blur_then_noise.apply(photo, 0), noise_then_blur.apply(photo, 0)
    assert psnr(a, b) < 30, "order must matter for blur and noise"
    # blurring after noise removes most of it: closer to the clean image than noise after blur
    assert psnr(b, photo) > psnr(a, photo)
    back = D.from_json(blur_then_noise.to_json())
    assert back == blur_then_noise and back.names == "blur+noise"
    np.testing.assert_array_equal(back.apply(photo, 0), a)
    nested = D.Compose([blur_then_noise, D.JPEG(quality=20)])
    assert len(nested) == 3


def test_parse_names_and_values():
    spec = D.parse("rain+noise25")
    assert isinstance(spec, D.Compose) and [s.name for s in spec] == ["rain", "noise"]
    assert spec.steps[1].sigma == 25
    assert D.parse("jpeg10").quality == 10
    assert D.parse("JPEG_20").quality == 20
    assert D.parse("lowlight").name == "low_light"  # alias
    assert D.parse("motion-blur").name == "motion_blur"
    assert D.parse(["haze", D.GaussianNoise(sigma=5)]).names == "haze+noise"
    assert D.parse("rain", severity=0.2) == D.Rain.sample(0, 0.2)
    # low light's number is its noise; the darkness still follows the severity (a dark, nearly clean photo)
    clean_dark, noisy_dark = D.parse("low_light0.5", severity=1), D.parse("low_light", severity=1)
    assert (clean_dark.noise, noisy_dark.noise) == (0.5, 12.0) and clean_dark.exposure == noisy_dark.exposure == 0.12


@pytest.mark.parametrize("bad", ["rainn", "rain+", "", "noise+smog", "rain!"])
def test_unknown_names_list_valid_ones(bad):
    with pytest.raises(ValueError) as e:
        D.parse(bad)
    assert "valid names" in str(e.value) and "rain" in str(e.value)


def test_value_on_operator_without_primary():
    with pytest.raises(ValueError, match="takes no value"):
        D.parse("rain5")


@pytest.mark.parametrize(
    "make",
    [
        lambda: D.GaussianNoise(sigma=-1),
        lambda: D.GaussianNoise(sigma=float("nan")),
        lambda: D.JPEG(quality=0),
        lambda: D.JPEG(quality=101),
        lambda: D.Haze(beta=1, tint=(1, 1)),
        lambda: D.ResizeBlur(scale=0.5, down="lanczos9"),
        lambda: D.Rain(density="lots"),
        lambda: D.from_dict({"name": "noise", "sigmaa": 3}),
        lambda: D.from_dict({"sigma": 3}),
        lambda: D.Rain.sample(0, 1.5),
        lambda: D.Rain.sample(0, "high"),
    ],
)
def test_out_of_range_parameters_raise(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    "img,match",
    [
        (np.zeros((0, 8, 3), np.float32), "empty"),
        (np.zeros((8, 8, 2), np.float32), "channels"),
        (np.zeros((8, 8), np.float32), "shape"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.full((8, 8, 3), 2.0, np.float32), r"\[0, 1\]"),
    ],
)
def test_bad_images_raise_clear_errors(img, match):
    with pytest.raises(ValueError, match=match):
        D.GaussianNoise(sigma=5).apply(img)


def test_uint8_input_is_rejected_with_hint():
    with pytest.raises(TypeError, match="to_float_image"):
        D.Rain().apply(np.zeros((8, 8, 3), np.uint8))


def test_random_training_mixtures():
    rng = np.random.default_rng(0)
    specs = [D.sample(rng) for _ in range(200)]
    kinds = {len(s.steps) for s in specs}
    assert kinds == {1, 2, 3}
    names = {step.name for s in specs for step in s.steps}
    assert names == set(ALL)
    again = [D.sample(np.random.default_rng(0)) for _ in range(1)]
    assert again[0] == specs[0]
    for s in specs:
        if len(s.steps) > 1:
            assert len({x.name for x in s.steps}) == len(s.steps), "a mixture repeats a kind"


def test_declared_ensemble_symmetries_match_the_operators():
    """Rain streaks run near vertically and haze is thicker at the top: the dihedral modes each declares keep
    that, and the modes it leaves out break it (the test-time ensemble relies on these declarations)."""
    import torch

    from defusion.ensemble import dihedral

    def streak_ratio(layer):  # > 1: structures run vertically (rows change less than columns)
        return np.abs(np.diff(layer, axis=1)).mean() / np.abs(np.diff(layer, axis=0)).mean()

    def top_minus_bottom(layer):
        h = layer.shape[0]
        return layer[: h // 3].mean() - layer[-(h // 3):].mean()

    grey = np.full((96, 96, 3), 0.3, np.float32)
    rain = D.Rain.sample(rng=0, severity=0.8).apply(grey, rng=1).mean(-1) - 0.3
    haze = D.Haze.sample(rng=0, severity=0.8).apply(grey, rng=1).mean(-1) - 0.3
    assert streak_ratio(rain) > 1.5 and top_minus_bottom(haze) > 0.05
    view = lambda a, m: dihedral(torch.from_numpy(np.ascontiguousarray(a)), m).numpy()  # noqa: E731
    for m in range(8):
        assert (streak_ratio(view(rain, m)) > 1.5) == (m in D.Rain.dihedral_modes)
        assert (top_minus_bottom(view(haze, m)) > 0.05) == (m in D.Haze.dihedral_modes)
    assert D.ensemble_symmetry(D.parse("rain+noise")) == ((0, 2, 4, 6), True)
    assert D.ensemble_symmetry(D.parse("haze+jpeg")) == ((0,), False)
    assert D.ensemble_symmetry(None) == D.ensemble_symmetry(D.parse("noise+low_light")) == (tuple(range(8)), True)
