"""The shared padding and tiling code: coverage, blend weights, and what it is for: a flat image restores flat at the
image's borders and at tile seams, for a model that zero-pads like every convolutional network does."""

import itertools

import numpy as np
import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from defusion import DefusionPipeline
from defusion.pipelines import RestorerPipeline
from defusion.tiling import (
    blend_window,
    context_tile,
    crop_context,
    pad_with_context,
    padded_size,
    tile_count,
    tile_layout,
    tile_starts,
    tiled_apply,
)


class ZeroPaddedConvs(nn.Module):
    """Three random 3x3 convolutions with zero padding: a receptive radius of 3 px, and a border band on a flat
    image wherever it does not see context, as in the shipped networks."""

    def __init__(self, channels=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1) for _ in range(3)])
        for c in self.convs:
            c.weight.data = torch.rand(c.weight.shape, generator=g) / 9
            c.bias.data.zero_()

    def forward(self, x):
        for c in self.convs:
            x = c(x)
        return x


FLAT = torch.full((1, 3, 45, 70), 0.3)


def test_tile_starts_cover_with_the_overlap_on_the_grid():
    for length, tile, overlap, m in itertools.product((17, 64, 100, 257, 1000), (16, 32, 48), (0, 3, 8, 15), (1, 8, 16)):
        if tile % m or overlap >= tile:
            continue
        starts = tile_starts(length, tile, overlap, m)
        if length <= tile:
            assert starts == [0]
            continue
        assert starts[0] == 0 and starts[-1] == length - tile
        assert all(s % m == 0 for s in starts[:-1])
        # each overlap is at least the asked one (or tile - m, where the grid leaves no finer stride)
        assert all(b - a <= max(m, tile - overlap) for a, b in zip(starts, starts[1:]))
        size, balanced = tile_layout(length, tile, overlap, m)  # what tiled_apply uses: no more tiles, shorter ones
        assert size <= tile and len(balanced) <= len(starts) and balanced[-1] + size == length
        assert all(b - a <= max(m, size - overlap) for a, b in zip(balanced, balanced[1:]))
        assert tile_count(length, length, tile, overlap, m) == len(balanced) ** 2


def test_balanced_tiles_cost_little_more_than_no_tiles():
    assert tile_layout(816, 560, 32, 16) == (432, [0, 384])  # not two 560-px tiles
    assert tile_layout(4128, 560, 32, 16)[0] == 544


def test_blend_weights_are_a_partition_of_unity_across_an_exact_overlap():
    overlap, tile = 16, 48
    a = blend_window(1, tile, 0, 0, 1, 2 * tile - overlap, overlap, "cpu", torch.float32)[0]
    b = blend_window(1, tile, 0, tile - overlap, 1, 2 * tile - overlap, overlap, "cpu", torch.float32)[0]
    total = torch.zeros(2 * tile - overlap)
    total[:tile] += a
    total[tile - overlap :] += b
    torch.testing.assert_close(total, torch.ones_like(total))
    assert (a[-overlap // 4 :] == 0).all() and (b[: overlap // 4] == 0).all()  # a tile's own edge is not used


def test_pad_with_context_round_trip_and_sizes():
    x = torch.rand(2, 3, 37, 45)
    for m, border in ((1, 0), (8, 0), (16, 5), (16, 16)):
        padded, offset = pad_with_context(x, m, border)
        assert padded.shape[-2:] == padded_size(37, 45, m, border)
        assert all(s % m == 0 for s in padded.shape[-2:]) and offset == (border, border)
        torch.testing.assert_close(crop_context(padded, offset, (37, 45)), x, atol=0, rtol=0)
    thin, _ = pad_with_context(torch.rand(1, 3, 2, 40), 8, 4)  # too thin to reflect: replicated
    assert thin.shape[-2:] == (16, 48)
    assert context_tile(512, 16, 16) == 544 and context_tile(512, 16, 16, extra=1) == 560 and context_tile(None, 16) is None


def test_a_flat_image_stays_flat_at_borders_and_seams():
    net = ZeroPaddedConvs()
    with torch.no_grad():
        plain = net(FLAT)
        band = (plain - plain[..., 20, 35, None, None]).abs()
        assert band[..., 0, :].max() > 0.05  # the model's own border band: what the context has to remove
        padded, offset = pad_with_context(FLAT, 8, 4)
        tile = context_tile(24, 4, 8)
        for t in (None, tile):
            out = crop_context(tiled_apply(lambda xs: net(xs[0]), [padded], t, overlap=16, multiple=8), offset, (45, 70))
            assert out.shape == FLAT.shape
            torch.testing.assert_close(out, plain[..., 20:21, 35:36].expand_as(out), atol=1e-5, rtol=0)
        # tiles blended without using their own edges give the untiled result wherever the model's reach is short
        img = torch.rand(1, 3, 64, 96)
        torch.testing.assert_close(tiled_apply(lambda xs: net(xs[0]), [img], 32, overlap=16), net(img), atol=1e-5, rtol=0)


class _FlatDenoiser(nn.Module):
    """A stand-in for the conditioned forward: predicts a degradation from the low-quality image alone through
    zero-padded convolutions (so its border band is known), whatever the noisy state."""

    def __init__(self, pipe):
        super().__init__()
        self.unet, self.bridge, self.adapter = pipe.unet, pipe.bridge, pipe.adapter
        self.net = ZeroPaddedConvs()

    def forward(self, sample, timestep, lq, tokens, text=None, instruction_scale=None):
        return lq - self.net(lq)  # y0 = x_lq - x_hq: the restoration is net(lq)


@pytest.mark.parametrize("tile", [None, 32])
def test_defusion_pipeline_restores_a_flat_image_flat(tile):
    torch.manual_seed(0)
    pipe = DefusionPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    pipe.__dict__["_denoiser"] = _FlatDenoiser(pipe)
    img = np.full((45, 70, 3), 0.4, np.float32)
    for ensemble in (1, 4):
        out = pipe(img, num_inference_steps=1, output_type="np", tile_size=tile, tile_overlap=16,
                   self_ensemble=ensemble).images[0]  # fmt: skip
        assert out.shape == img.shape
        assert np.abs(out - out[22, 35]).max() < 1e-5, f"not flat: self_ensemble={ensemble}, tile={tile}"


class _FlatRestorer(ModelMixin, ConfigMixin):
    downsample_factor = 8

    @register_to_config
    def __init__(self):
        super().__init__()
        self.net = ZeroPaddedConvs()

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("tile", [None, 24])
def test_restorer_pipeline_restores_a_flat_image_flat(tile):
    pipe = RestorerPipeline(restorer=_FlatRestorer())
    pipe.set_progress_bar_config(disable=True)
    img = np.full((45, 70, 3), 0.4, np.float32)
    out = pipe(img, output_type="np", tile_size=tile, tile_overlap=16).images[0]
    assert out.shape == img.shape and np.abs(out - out[22, 35]).max() < 1e-5


class _Count:
    def __init__(self):
        self.n = 0

    def update(self, n=1):
        self.n += n


def test_large_images_restore_region_by_region_flat_and_counted():
    from defusion.pipelines.defusion_pipeline import REGION_TILES

    torch.manual_seed(0)
    pipe = DefusionPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    pipe.__dict__["_denoiser"] = _FlatDenoiser(pipe)
    img = np.full((150, 300, 3), 0.4, np.float32)  # more than REGION_TILES tiles of 32 along its width
    assert 300 > REGION_TILES * 32
    for ensemble, steps in ((1, 1), (4, 1), (4, 2)):
        bar = _Count()
        with pipe.report_progress(bar):
            out = pipe(img, num_inference_steps=steps, output_type="np", tile_size=32, tile_overlap=16,
                       self_ensemble=ensemble).images[0]  # fmt: skip
        if steps == 1:  # (with more steps the scheduler's noise reaches the output of this stand-in)
            assert out.shape == img.shape and np.abs(out - out[75, 150]).max() < 1e-5  # no region seam, no band
        assert bar.n == pipe.num_evaluations(150, 300, None, steps, ensemble, tile_size=32, tile_overlap=16)
