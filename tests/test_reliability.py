"""Bad settings and broken files give one clear error, never NaN images or deep tracebacks."""

import numpy as np
import pytest
import torch

from defusion import DefusionPipeline, RestorerPipeline
from defusion.cli import main
from defusion.images import save_image


@pytest.fixture(scope="module")
def pipe(tiny_defusion):
    return tiny_defusion


def rand_img(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def test_eta_is_refused_where_ddim_would_return_nan(pipe):
    img = rand_img(16, 16)
    out = pipe(img, eta=0.99, num_inference_steps=4, output_type="np", generator=torch.Generator().manual_seed(0))
    assert np.isfinite(out.images).all()
    for bad in (1.0, 1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="eta"):
            pipe(img, eta=bad, num_inference_steps=4)


def test_steps_are_bounded(pipe):
    for bad in (0, 1001, 2.5, True, None.__class__):
        with pytest.raises(ValueError, match="num_inference_steps must be an integer from 1 to 1000"):
            pipe(rand_img(16, 16), num_inference_steps=bad)


def test_non_finite_weights_raise_instead_of_returning_nan(pipe):
    broken = DefusionPipeline(**pipe.components)
    broken.bridge = type(pipe.bridge).from_config(pipe.bridge.config)
    broken.bridge.load_state_dict(pipe.bridge.state_dict())
    with torch.no_grad():
        broken.bridge.heads[0].bias.fill_(float("nan"))  # as a damaged weights file would
    broken.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="not finite"):
        broken(rand_img(16, 16))


@pytest.mark.parametrize("shape", [(1, 600), (20, 600), (600, 17), (3, 3)])
def test_thin_images_restore_tiled(pipe, shape):
    """Images thinner than a tile on one side and longer than it on the other (tile 512, overlap 32)."""
    out = pipe(rand_img(*shape), num_inference_steps=1, output_type="np", tile_size=512, tile_overlap=32).images[0]
    assert out.shape == (*shape, 3) and np.isfinite(out).all()


def test_tile_arguments_are_checked(pipe):
    img = rand_img(16, 16)
    for kw, msg in ((dict(tile_size=0), "tile_size"), (dict(tile_size=-16), "tile_size"), (dict(tile_size=15), "tile_size"),
                    (dict(tile_size=32.0), "tile_size"), (dict(tile_overlap=-1), "tile_overlap"),
                    (dict(tile_overlap=2.5), "tile_overlap"), (dict(tile_size=32, tile_overlap=32), "smaller than")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            pipe(img, **kw)
    restorer = RestorerPipeline.from_preset("promptir", "tiny")
    with pytest.raises(ValueError, match="tile_size"):
        restorer(img, tile_size=-8)


def test_cli_turns_every_failure_into_one_line(tmp_path, capsys, pipe):
    save_image(rand_img(24, 24), tmp_path / "in.png")
    pipe.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 64)  # truncated
    (tmp_path / "bad_index").mkdir()
    (tmp_path / "bad_index" / "model_index.json").write_text("{not json")
    (tmp_path / "out_dir").mkdir()
    cases = [
        ["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", str(tmp_path / "model")],
        ["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", str(tmp_path / "bad_index")],
        ["restore", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png")],
        ["degrade", str(tmp_path / "in.png"), "noise", "-o", str(tmp_path / "out_dir")],  # a folder as the output
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()  # the loading progress bar may come first
        assert err.splitlines()[-1].startswith(f"defusion {argv[0]}: error:") and "Traceback" not in err, err
    with pytest.raises(Exception):
        main([*cases[0], "--debug"])  # --debug: the exception itself, with its traceback
