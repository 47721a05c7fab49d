import numpy as np
import pytest

from defusion.metrics import LPIPS, center_crop_multiple, psnr, rgb_to_y, ssim


def test_psnr_hand_computed():
    a = np.full((32, 32, 3), 0.5, np.float32)
    b = a + 0.1  # mse 0.01 -> 20 dB exactly
    assert psnr(b, a) == pytest.approx(20.0, abs=1e-4)
    assert psnr(a, a) == float("inf")
    c = a.copy()
    c[:16] += 0.2  # mse = 0.04 / 2 = 0.02 -> 10 log10(50)
    assert psnr(c, a) == pytest.approx(10 * np.log10(50), abs=1e-4)


def test_center_crop_multiple_of_16():
    img = np.arange(20 * 37 * 1, dtype=np.float32).reshape(20, 37, 1) / 1000
    out = center_crop_multiple(img, 16)
    assert out.shape == (16, 32, 1)
    np.testing.assert_array_equal(out, img[2:18, 2:34])
    # the crop decides which pixels count: an error outside the crop is ignored
    a = np.full((20, 20, 3), 0.5, np.float32)
    b = a.copy()
    b[0, 0] = 0.0
    assert psnr(b, a) == float("inf")
    assert psnr(b, a, crop_multiple=None) < 60


def test_y_channel_bt601():
    white, black = np.ones((1, 1, 3)), np.zeros((1, 1, 3))
    assert rgb_to_y(white)[0, 0, 0] * 255 == pytest.approx(235.0, abs=1e-3)
    assert rgb_to_y(black)[0, 0, 0] * 255 == pytest.approx(16.0, abs=1e-6)
    a = np.full((16, 16, 3), 0.5, np.float32)
    b = a.copy()
    b[..., 2] += 0.1  # blue only: Y error = 0.1 * 24.966 / 255
    dy = 0.1 * 24.966 / 255
    assert psnr(b, a, y_channel=True) == pytest.approx(-20 * np.log10(dy), abs=1e-3)


def test_ssim_known_values():
    a = np.full((32, 32, 3), 0.5, np.float32)
    b = np.full((32, 32, 3), 0.25, np.float32)
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)  # constant images: contrast/structure = 1
    assert ssim(a, b) == pytest.approx(expected, abs=1e-6)
    assert ssim(a, b, gaussian=True) == pytest.approx(expected, abs=1e-6)
    rng = np.random.default_rng(0)
    x = rng.random((48, 48, 3)).astype(np.float32)
    assert ssim(x, x) == pytest.approx(1.0)
    noisy = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    assert 0 < ssim(noisy, x) < 1 and ssim(noisy, x, gaussian=True) != ssim(noisy, x)


def test_border_and_errors():
    a = np.full((32, 32, 3), 0.5, np.float32)
    b = a.copy()
    b[:2] = 0
    assert psnr(b, a, border=2) == float("inf")
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, a[:16])
    with pytest.raises(ValueError, match="NaN"):
        psnr(np.full_like(a, np.nan), a)
    with pytest.raises(ValueError, match="smaller than the crop"):
        psnr(a[:8, :8], a[:8, :8])


def test_lpips_is_unavailable_without_trunk_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_torch_home" / "hub"))
    m = LPIPS()
    assert not m.available and "Nothing is downloaded" in m.reason
    a = np.full((32, 32, 3), 0.5, np.float32)
    assert m(a, a) is None


def test_lpips_with_local_trunk_file(tmp_path):
    torch = pytest.importorskip("torch")
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    m = LPIPS(trunk_weights=path)
    assert m.available and m.info["lpips_trunk"] == str(path)
    rng = np.random.default_rng(0)
    x = rng.random((64, 64, 3)).astype(np.float32)
    assert m(x, x) == pytest.approx(0.0, abs=1e-6)
    assert m(np.clip(x + 0.2, 0, 1), x) > 0
    # the trunk really holds the file's weights
    w = m.model.net.slice1[0].weight
    assert torch.equal(w, torch.load(path, weights_only=True)["features.0.weight"])
    with pytest.raises(FileNotFoundError):
        from defusion.losses import find_trunk_weights

        find_trunk_weights("alex", tmp_path / "nothing.pth")
