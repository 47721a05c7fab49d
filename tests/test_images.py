import numpy as np
import pytest
from PIL import Image

from defusion.images import check_image, load_image, save_image, to_float_image


def test_uint8_uint16_float_and_grey():
    u8 = np.full((4, 5, 3), 255, np.uint8)
    assert to_float_image(u8).max() == 1.0
    u16 = np.full((4, 5), 65535, np.uint16)
    out = to_float_image(u16)
    assert out.shape == (4, 5, 1) and out.max() == 1.0
    assert to_float_image(u16, rgb=True).shape == (4, 5, 3)


def test_rgba_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)  # fully transparent black
    out = to_float_image(Image.fromarray(rgba, "RGBA"))
    assert out.shape == (2, 2, 3) and np.allclose(out, 1.0)
    arr = np.concatenate([np.zeros((2, 2, 3)), np.ones((2, 2, 1))], -1).astype(np.float32)
    assert np.allclose(to_float_image(arr), 0.0)


def test_torch_chw_tensor():
    torch = pytest.importorskip("torch")
    t = torch.rand(1, 3, 6, 7)
    out = to_float_image(t)
    assert out.shape == (6, 7, 3)
    np.testing.assert_allclose(out, t[0].permute(1, 2, 0).numpy())


def test_16bit_png_keeps_precision(tmp_path):
    import cv2

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    p = tmp_path / "deep.png"
    cv2.imwrite(str(p), ramp)
    out = load_image(p, rgb=False)
    assert out.shape == (64, 64, 1)
    np.testing.assert_allclose(out[..., 0], ramp / 65535.0, atol=1e-6)
    rgb16 = np.stack([ramp, ramp // 2, ramp // 4], -1)
    cv2.imwrite(str(tmp_path / "deep_rgb.png"), rgb16[..., ::-1])
    out = load_image(tmp_path / "deep_rgb.png")
    np.testing.assert_allclose(out[..., 1], (ramp // 2) / 65535.0, atol=1e-6)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(bad)


def test_save_round_trip(tmp_path):
    img = np.random.default_rng(0).random((8, 9, 3)).astype(np.float32)
    p = save_image(img, tmp_path / "sub" / "x.png")
    np.testing.assert_allclose(load_image(p), img, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize(
    "x,err",
    [
        ("a string", TypeError),
        (np.zeros((0, 3), np.uint8), ValueError),
        (np.zeros((4, 4, 3), np.int64), TypeError),
        (np.full((4, 4, 3), -0.5, np.float32), ValueError),
        (np.zeros((4, 4, 5), np.float32), ValueError),
    ],
)
def test_bad_inputs(x, err):
    with pytest.raises(err):
        to_float_image(x)


def test_huge_image_refused_before_allocation():
    from numpy.lib.stride_tricks import as_strided

    base = np.zeros(1, np.float32)
    huge = as_strided(base, shape=(20000, 20000, 3), strides=(0, 0, 0))  # no memory behind it
    with pytest.raises(ValueError, match="limit"):
        check_image(huge)


def test_exif_orientation_is_honoured(tmp_path):
    """A phone photo stored sideways with an EXIF orientation comes back the way it was taken, from a file or a PIL
    image."""
    from PIL import Image

    from defusion.images import load_image, to_float_image

    upright = np.zeros((40, 60, 3), np.uint8)
    upright[:10] = 255  # a white band along the top
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # the sensor's sideways pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    for img in (load_image(tmp_path / "phone.jpg"), to_float_image(Image.open(tmp_path / "phone.jpg"))):
        assert img.shape == (40, 60, 3)
        assert img[:10].mean() > 0.9 and img[12:].mean() < 0.1


def test_make_grid_leaves_no_gap_beside_a_narrow_panel():
    from defusion.images import make_grid

    photo, panel = np.zeros((60, 120, 3), np.float32), np.zeros((60, 60, 3), np.float32)
    grid = make_grid([photo, panel, photo], ["a", "b", "c"], pad=4)
    assert grid.shape[1] == 4 + 120 + 4 + 60 + 4 + 120 + 4  # columns as wide as their tiles
    assert grid.shape[0] == 4 + 14 + 60 + 4
    assert grid[20:78, 4 + 120 + 4 + 60 + 4 + 2, 0].max() == 0  # the third tile starts right after the panel
    two_rows = make_grid([photo, panel, panel, photo], cols=2, pad=0)
    assert two_rows.shape == (120, 240, 3)
