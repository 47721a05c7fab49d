import numpy as np
import pytest

from defusion import VisualInstruction
from defusion import degradations as D
from defusion.instructions import instruction_gallery
from conftest import psnr


def test_compose_builds_degraded_ground_and_null():
    inst = VisualInstruction.compose([D.Rain(density=0.8), D.GaussianNoise(sigma=25)], seed=3)
    assert inst.image.shape == inst.null.shape == (224, 224, 3)
    assert inst.names == "rain+noise"
    assert psnr(inst.image, inst.null) < 25
    again = VisualInstruction.compose([D.Rain(density=0.8), D.GaussianNoise(sigma=25)], seed=3)
    np.testing.assert_array_equal(inst.image, again.image)
    np.testing.assert_array_equal(inst.null, again.null)
    other = VisualInstruction.compose([D.Rain(density=0.8), D.GaussianNoise(sigma=25)], seed=4)
    assert not np.array_equal(inst.null, other.null)


def test_same_spec_same_strength_on_image_and_ground(photo):
    spec = D.GaussianNoise(sigma=30)
    inst = VisualInstruction.from_spec(spec, seed=0)
    noisy = spec.apply(photo, 1)
    # the residual noise has the same strength on the ground as on the photo
    s_img = np.std(noisy - photo)
    s_inst = np.std(inst.image - inst.null)
    assert abs(s_img - s_inst) / s_img < 0.15


def test_from_names_and_addition():
    a = VisualInstruction.from_names("haze", seed=1)
    b = VisualInstruction.from_names("noise15", seed=1)
    c = a + b
    assert c.names == "haze+noise" and c.spec.steps[1].sigma == 15
    np.testing.assert_array_equal(c.null, a.null)
    assert psnr(c.image, a.image) < 40


def test_null_instruction_and_ablation_grounds():
    null = VisualInstruction.null_instruction(seed=2)
    np.testing.assert_array_equal(null.image, null.null)
    assert null.names == "none"
    blank = VisualInstruction.from_names("rain", ground="blank")
    assert np.allclose(blank.null, blank.null[0, 0])
    simple = VisualInstruction.from_names("rain", ground="simple")
    assert len(np.unique(simple.null)) == 2
    arr = VisualInstruction.from_names("blur", ground=np.full((64, 64, 3), 0.3, np.float32))
    assert arr.image.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="ground must be"):
        VisualInstruction.from_names("rain", ground="stripes")


def test_random_strength_keeps_kinds():
    inst = VisualInstruction.from_spec(D.parse("rain+noise"), seed=0, strength="random")
    assert inst.names == "rain+noise"
    with pytest.raises(ValueError):
        VisualInstruction.from_spec(D.parse("rain"), strength="strong")


def test_dict_round_trip():
    inst = VisualInstruction.from_names("snow+jpeg10", seed=9, size=96)
    back = VisualInstruction.from_dict(inst.to_dict())
    np.testing.assert_array_equal(back.image, inst.image)


def test_exports(tmp_path):
    torch = pytest.importorskip("torch")
    inst = VisualInstruction.from_names("noise", seed=0, size=64)
    t = inst.to_tensor()
    assert t.shape == (1, 3, 64, 64) and t.dtype == torch.float32
    assert -1.0 <= t.min() and t.max() <= 1.0
    both = inst.to_tensor(include_null=True)
    assert both.shape == (2, 3, 64, 64)
    np.testing.assert_allclose((both[1].permute(1, 2, 0).numpy() + 1) / 2, inst.null, atol=1e-6)
    assert inst.to_pil().size == (64, 64)
    p = inst.save_grid(tmp_path / "grid.png")
    from PIL import Image

    assert Image.open(p).size[0] > 3 * 64
    g = instruction_gallery([inst, VisualInstruction.from_names("rain", seed=0, size=64)])
    assert g.ndim == 3


def test_unknown_name():
    with pytest.raises(ValueError, match="valid names"):
        VisualInstruction.from_names("fog+drizzle")
