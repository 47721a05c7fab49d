import numpy as np
import pytest

from visual_grounds import CATEGORIES, ELEMENTS, GroundPool, ImageFolderElement, blank_ground, simple_ground
from visual_grounds.colors import COLOR_CHECKER_SRGB, color_checker


@pytest.mark.parametrize("category,name", [(c, n) for c in CATEGORIES for n in ELEMENTS[c]])
def test_every_element_renders_valid_nonflat_images(category, name):
    fn = ELEMENTS[category][name]
    for size in [(64, 64), (40, 96)]:
        img = fn(np.random.default_rng(3), size)
        assert img.shape == (*size, 3) and img.dtype == np.float32
        assert img.min() >= 0 and img.max() <= 1
        assert img.std() > 0.05, f"{name} is nearly flat"
    a = fn(np.random.default_rng(5), (48, 48))
    b = fn(np.random.default_rng(5), (48, 48))
    np.testing.assert_array_equal(a, b)


def test_each_category_has_several_elements():
    assert set(ELEMENTS) == set(CATEGORIES)
    for c in CATEGORIES:
        assert len(ELEMENTS[c]) >= 3, c


def test_ground_contains_four_categories_and_is_reproducible():
    pool = GroundPool(size=224)
    g = pool.sample(11)
    assert g.image.shape == (224, 224, 3) and g.image.dtype == np.float32
    assert sorted(g.categories) == sorted(CATEGORIES)
    covered = np.zeros((224, 224), int)
    for p in g.parts:
        top, left, bottom, right = p.box
        covered[top:bottom, left:right] += 1
        assert bottom - top >= 16 and right - left >= 16
    assert (covered == 1).all(), "parts must tile the ground exactly"
    np.testing.assert_array_equal(g.image, GroundPool(size=224).sample(11).image)
    assert not np.array_equal(g.image, pool.sample(12).image)


def test_ground_parts_hold_the_named_elements():
    pool = GroundPool(size=(160, 200))
    g = pool.sample(4)
    assert g.image.shape == (160, 200, 3)
    for p in g.parts:
        assert p.element in ELEMENTS[p.category]


def test_layouts_vary_across_seeds():
    pool = GroundPool(size=128)
    layouts = {tuple(p.box for p in pool.sample(s).parts) for s in range(20)}
    elements = {tuple(p.element for p in pool.sample(s).parts) for s in range(20)}
    assert len(layouts) > 10 and len(elements) > 10


def test_color_checker_uses_published_values():
    assert COLOR_CHECKER_SRGB.shape == (24, 3)
    assert tuple(COLOR_CHECKER_SRGB[0]) == (115, 82, 68)  # dark skin
    assert tuple(COLOR_CHECKER_SRGB[18]) == (243, 243, 242)  # white 9.5
    img = color_checker(np.random.default_rng(0), (240, 360))
    # the centre of the first patch carries the dark-skin value
    np.testing.assert_allclose(img[30, 30] * 255, COLOR_CHECKER_SRGB[0], atol=1)


def test_blank_and_simple_grounds():
    b = blank_ground(64)
    assert b.shape == (64, 64, 3) and np.allclose(b, 0.5)
    assert not np.allclose(blank_ground(64, seed=1), 0.5)
    s = simple_ground(64, seed=0, period=8)
    np.testing.assert_allclose(np.unique(s), [0.1, 0.9], atol=1e-6)
    with pytest.raises(ValueError):
        blank_ground(64, color=(2, 0, 0))
    with pytest.raises(ValueError):
        simple_ground(64, period=1)


def test_natural_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    el = ImageFolderElement(tmp_path)
    crop = el(np.random.default_rng(0), (32, 48))
    assert crop.shape == (32, 48, 3)
    pool = GroundPool(size=96, natural_image_dir=tmp_path, natural_image_prob=1.0)
    assert any(p.element == "image_crop" for p in pool.sample(0).parts)
    with pytest.raises(ValueError, match="holds no images"):
        ImageFolderElement(_empty(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        ImageFolderElement(tmp_path / "nope")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_bad_pool_arguments():
    with pytest.raises(ValueError, match="at least 64"):
        GroundPool(size=16)
    with pytest.raises(ValueError, match="no elements"):
        GroundPool(elements={"regular": ELEMENTS["regular"]})
    with pytest.raises(ValueError):
        GroundPool().sample("seven")


def test_gallery_cli(tmp_path):
    from visual_grounds.__main__ import main

    main(["-o", str(tmp_path / "g.png"), "-n", "4", "--size", "96", "--elements", str(tmp_path / "e.png")])
    assert (tmp_path / "g.png").stat().st_size > 1000 and (tmp_path / "e.png").stat().st_size > 1000
