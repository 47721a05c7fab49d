"""The registered degradations as batched torch operations, on whatever device the batch is on.

    >>> from defusion.degradations import batched
    >>> specs = [D.parse("noise25"), D.parse("rain+jpeg20"), None]     # one spec (or None) per image
    >>> lq = batched.apply_batch(clean, specs, generator=g)             # clean: (B, C, H, W) in [0, 1]

Each operator takes the same parameters as its numpy twin in this package (the spec's fields) and draws its
nuisance randomness (noise, streak positions, depth fields, drop positions) from a ``torch.Generator`` on the
batch's device, so a GPU training step degrades its whole batch without a host round trip. ``apply_batch`` groups a
batch by (step position, kind) and runs one call per group. Where the numpy operator draws per-object details
that a batched form would have to loop over, the batched one uses their mean (one streak length and angle per rain
image, one flake radius per snow layer); tests/test_batched_degradations.py checks each operator against its numpy
twin: >= 35 dB between outputs where the operator is deterministic, residual mean and spread within 5 % where it
is random. JPEG is a DCT simulation of baseline libjpeg (4:2:0, the standard tables scaled by quality, fancy
upsampling).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .base import Degradation

OPS: dict[str, Callable] = {}


def op(name: str):
    def deco(fn):
        OPS[name] = fn
        return fn

    return deco


# ---------------------------------------------------------------------------------------------------- helpers
def host_tensor(values, dtype, device) -> torch.Tensor:
    """A tensor of host values on ``device`` without waiting for the device: a pinned, non-blocking copy on CUDA."""
    t = torch.tensor(values, dtype=dtype)
    if torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def params_of(specs: Sequence[Degradation], device) -> dict:
    """The specs' fields stacked: numbers -> (B,) float32, triples -> (B, 3), strings -> a list. ``p["host"]`` keeps
    the values as Python lists, so that sizes (kernel radii, drop counts) are read without a device sync."""
    out, host = {}, {}
    for f in dataclasses.fields(specs[0]):
        vals = [getattr(s, f.name) for s in specs]
        host[f.name] = vals
        out[f.name] = vals if isinstance(vals[0], str) else host_tensor(vals, torch.float32, device)
    out["host"] = host
    return out


def _rand(shape, x, generator):
    return torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)


def _randn(shape, x, generator):
    return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)


def quantize8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255.0) / 255.0


def _bview(v: torch.Tensor, ndim: int = 4) -> torch.Tensor:
    return v.view(-1, *[1] * (ndim - 1))


def filter_per_sample(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate each image (all its channels) with its own kernel (B, kh, kw), reflect borders (OpenCV's
    BORDER_REFLECT_101), same size out."""
    b, c, h, w = x.shape
    kh, kw = kernels.shape[-2:]
    ph, pw = min(kh // 2, h - 1), min(kw // 2, w - 1)
    if (ph, pw) != (kh // 2, kw // 2):  # a kernel wider than the image: keep its centre
        kernels = kernels[:, kh // 2 - ph : kh // 2 + ph + 1, kw // 2 - pw : kw // 2 + pw + 1]
    xp = F.pad(x.reshape(1, b * c, h, w), (pw, pw, ph, ph), mode="reflect")
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(xp, weight, groups=b * c).view(b, c, h, w)


def conv_fft(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Zero-padded 'same' correlation of each image with its own kernel (B, k, k), through the FFT (large kernels)."""
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    fh, fw = -(-(h + k - 1) // 64) * 64, -(-(w + k - 1) // 64) * 64  # a few FFT sizes: cached plans, fast lengths
    kf = torch.fft.rfft2(kernels.flip(-1, -2).float(), s=(fh, fw)).unsqueeze(1)
    y = torch.fft.irfft2(torch.fft.rfft2(x.float(), s=(fh, fw)) * kf, s=(fh, fw))
    return y[..., k // 2 : k // 2 + h, k // 2 : k // 2 + w].to(x.dtype)


def blur_radius(max_sigma: float) -> int:
    return max(1, int(math.ceil(3 * max_sigma)))


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, 2 radius + 1) normalised 1-d Gaussians; sigma < 0.05 gives a delta (no blur), as the numpy operator."""
    t = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    s = sigma.float().clamp_min(0.05).view(-1, 1)
    k = torch.exp(-0.5 * (t / s) ** 2)
    k = torch.where(sigma.view(-1, 1) < 0.05, (t == 0).float().expand_as(k), k)
    return k / k.sum(1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    k = gaussian_kernels(sigma, radius)
    return filter_per_sample(filter_per_sample(x, k[:, :, None]), k[:, None, :])


def segment_kernels(length: torch.Tensor, angle_deg: torch.Tensor, width: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size, size) anti-aliased segments from the centre along -(sin a, cos a) (a from vertical): correlating
    a seed image with one paints a streak from each seed along +(sin a, cos a)."""
    c = size // 2
    yy, xx = torch.meshgrid(*(torch.arange(size, device=length.device, dtype=torch.float32) - c,) * 2, indexing="ij")
    a = torch.deg2rad(angle_deg).view(-1, 1, 1)
    dx, dy = -torch.sin(a), -torch.cos(a)
    t = (xx * dx + yy * dy).clamp(min=0).minimum(length.view(-1, 1, 1))
    dist = torch.sqrt((xx - t * dx) ** 2 + (yy - t * dy) ** 2)
    return (width.view(-1, 1, 1) / 2 + 0.5 - dist).clamp(0, 1)


def disk_coverage(radius: torch.Tensor, size: int, supersample: int = 8) -> torch.Tensor:
    """(B, size, size): the fraction of each pixel inside a disk of ``radius`` at the centre (anti-aliased)."""
    half = size // 2
    n = size * supersample
    c = (torch.arange(n, device=radius.device, dtype=torch.float32) + 0.5) / supersample - (half + 0.5)
    inside = (c[None, None, :] ** 2 + c[None, :, None] ** 2) <= radius.view(-1, 1, 1).float() ** 2
    return inside.float().view(-1, size, supersample, size, supersample).mean(dim=(2, 4))


def scene_depth(x: torch.Tensor, generator) -> torch.Tensor:
    """(B, 1, H, W) relative depth in [0.1, 1], as ``weather.scene_depth``: far at the top, a random tilt, smooth
    bumps from a bicubic-upsampled 6 x 6 field."""
    b, _, h, w = x.shape
    yy = torch.linspace(1.0, 0.0, h, device=x.device).view(1, 1, h, 1)
    xx = torch.linspace(-0.5, 0.5, w, device=x.device).view(1, 1, 1, w)
    tilt = (_rand((b, 1, 1, 1), x, generator).float() - 0.5) * 0.6
    base = (yy + tilt * xx).clamp(0, 1)
    field = F.interpolate(_rand((b, 1, 6, 6), x, generator).float(), size=(h, w), mode="bicubic", align_corners=False)
    lo, hi = field.amin(dim=(2, 3), keepdim=True), field.amax(dim=(2, 3), keepdim=True)
    depth = 0.6 * base + 0.4 * (field - lo) / (hi - lo + 1e-6)
    return (0.1 + 0.9 * depth).to(x.dtype)


def seeds(x: torch.Tensor, rate: torch.Tensor, lo: float, hi: float, generator, shape=None) -> torch.Tensor:
    """A (B, 1, h, w) map of point seeds: each pixel holds one with probability ``rate`` (B,), of brightness
    uniform in [lo, hi] (0-255 scale, returned in [0, 1])."""
    b = x.shape[0]
    h, w = shape or x.shape[-2:]
    hit = _rand((b, 1, h, w), x, generator) < _bview(rate.to(x.dtype))
    return hit.to(x.dtype) * (lo + (hi - lo) * _rand((b, 1, h, w), x, generator)) / 255.0


# ---------------------------------------------------------------------------------------------------- noise
@op("noise")
def noise(x, p, generator):
    out = x + _randn(x.shape, x, generator) * _bview(p["sigma"] / 255.0)
    q = _bview(p["quantize"]) > 0.5
    return torch.where(q, quantize8(out), out)


@op("poisson")
def poisson(x, p, generator):
    shot, read = _bview(p["shot"]), _bview(p["read_sigma"] / 255.0)
    safe = shot.clamp_min(1e-8)
    rate = (x.float() / safe).clamp_min(0)
    shot_noise = (torch.poisson(rate, generator=generator) * safe - x) * (shot > 0)
    if x.shape[1] == 3:
        lum = shot_noise.mean(dim=1, keepdim=True)
        shot_noise = lum + _bview(p["chroma"]) * (shot_noise - lum)
    return quantize8(x + shot_noise.to(x.dtype) + _randn(x.shape, x, generator) * read)


# ---------------------------------------------------------------------------------------------------- blur
@op("blur")
def blur(x, p, generator):
    return gaussian_blur(x, p["sigma"], blur_radius(max(p["host"]["sigma"])))


@op("motion_blur")
def motion_blur(x, p, generator):
    length, curvature = p["length"], p["curvature"]
    b = x.shape[0]
    n_i = torch.clamp(torch.ceil(length * 4), min=8)
    max_length = max(p["host"]["length"])
    n = max(8, math.ceil(max_length * 4))
    k = torch.arange(n, device=x.device).view(1, -1)
    active = (k < n_i.view(-1, 1)).float()
    step = (length / n_i).view(-1, 1)
    turns = torch.randn((b, n), generator=generator, device=x.device) * curvature.view(-1, 1) * 0.25 * active
    heading = torch.deg2rad(p["angle"]).view(-1, 1) + torch.cumsum(turns, 1)
    zero = torch.zeros(b, 1, device=x.device)
    xs = torch.cat([zero, torch.cumsum(step * torch.cos(heading) * active, 1)], 1)
    ys = torch.cat([zero, torch.cumsum(step * torch.sin(heading) * active, 1)], 1)
    weight = torch.cat([torch.ones(b, 1, device=x.device), active], 1)  # the points the numpy path visits
    big = torch.finfo(xs.dtype).max
    for v in (xs, ys):  # centre each trajectory's bounding box on the kernel centre
        vmax = torch.where(weight > 0, v, -big).amax(1, keepdim=True)
        vmin = torch.where(weight > 0, v, big).amin(1, keepdim=True)
        v.sub_((vmax + vmin) / 2)
    half = int(math.ceil(max_length / 2)) + 1  # a centred path of length L reaches at most L / 2 from the centre
    size = 2 * half + 1
    px, py = xs + half, ys + half
    x0, y0 = px.floor(), py.floor()
    fx, fy = px - x0, py - y0
    kern = torch.zeros(b, size * size, device=x.device)
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        idx = (y0 + dy).clamp(0, size - 1).long() * size + (x0 + dx).clamp(0, size - 1).long()
        kern.scatter_add_(1, idx, wgt * weight)
    kern = (kern / kern.sum(1, keepdim=True)).view(b, size, size)
    delta = torch.zeros_like(kern)
    delta[:, half, half] = 1
    kern = torch.where(_bview(length, 3) < 1.0, delta, kern)
    return filter_per_sample(x, kern)


@op("defocus")
def defocus(x, p, generator):
    r = p["radius"]
    size = 2 * (int(math.ceil(max(p["host"]["radius"]))) + 1) + 1
    k = disk_coverage(r, size)
    k = k / k.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    delta = torch.zeros_like(k)
    delta[:, size // 2, size // 2] = 1
    return filter_per_sample(x, torch.where(_bview(r, 3) < 0.5, delta, k))


@functools.lru_cache(maxsize=4096)
def _resample_matrix(n: int, m: int, mode: str, device: str) -> torch.Tensor:
    """The (n, n) matrix of resizing a length-n signal to m samples with ``mode`` and back to n (bicubic)."""
    eye = torch.eye(n, device=device).view(n, 1, n, 1)
    kw = {} if mode in ("nearest", "area") else {"align_corners": False}
    down = F.interpolate(eye, size=(m, 1), mode=mode, **kw).view(n, m).T  # (m, n)
    eye_m = torch.eye(m, device=device).view(m, 1, m, 1)
    up = F.interpolate(eye_m, size=(n, 1), mode="bicubic", align_corners=False).view(m, n).T  # (n, m)
    return up @ down


@op("resize")
def resize(x, p, generator):
    h, w = x.shape[-2:]
    scales, modes = p["host"]["scale"], p["down"]
    dev = str(x.device)
    mh = torch.stack([_resample_matrix(h, max(1, round(h * s)), m, dev) if s < 1 else torch.eye(h, device=x.device)
                      for s, m in zip(scales, modes)])  # fmt: skip
    mw = torch.stack([_resample_matrix(w, max(1, round(w * s)), m, dev) if s < 1 else torch.eye(w, device=x.device)
                      for s, m in zip(scales, modes)])  # fmt: skip
    return (mh.unsqueeze(1).to(x.dtype) @ x @ mw.transpose(1, 2).unsqueeze(1).to(x.dtype))


# ---------------------------------------------------------------------------------------------------- compression
_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]  # fmt: skip
_CHROMA = [17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66] + [99] * 38


def jpeg_tables(quality: torch.Tensor, base: list[int]) -> torch.Tensor:
    """(B, 8, 8) quantisation tables, libjpeg's quality scaling of a standard table (baseline: 1..255)."""
    q = quality.float().clamp(1, 100).view(-1, 1)
    scale = torch.where(q < 50, torch.floor(5000 / q), 200 - 2 * q)
    t = torch.floor((_base_table(tuple(base), str(q.device)) * scale + 50) / 100)
    return t.clamp(1, 255).view(-1, 8, 8)


@functools.lru_cache(maxsize=8)
def _base_table(base: tuple, device: str) -> torch.Tensor:
    return torch.tensor(base, dtype=torch.float32).to(device)


@functools.lru_cache(maxsize=8)
def _dct_matrix(device: str) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m.float().to(device)


def _jpeg_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Code one (B, H, W) plane (0-255, H and W multiples of 8) with per-image tables: DCT, quantise, inverse."""
    b, h, w = plane.shape
    d = _dct_matrix(str(plane.device))
    blocks = (plane - 128).view(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coef = d @ blocks @ d.T
    t = table.view(b, 1, 1, 8, 8)
    rec = d.T @ (torch.round(coef / t) * t) @ d
    return (torch.round(rec + 128).clamp(0, 255)).permute(0, 1, 3, 2, 4).reshape(b, h, w)


@op("jpeg")
def jpeg(x, p, generator):
    b, c, h, w = x.shape
    u8 = torch.round(x.float().clamp(0, 1) * 255)
    ph, pw = (-h) % 16, (-w) % 16
    u8 = F.pad(u8, (0, pw, 0, ph), mode="replicate")
    luma_t, chroma_t = jpeg_tables(p["quality"], _LUMA), jpeg_tables(p["quality"], _CHROMA)
    if c == 1:
        return (_jpeg_plane(u8[:, 0], luma_t)[:, None, :h, :w] / 255).to(x.dtype)
    r, g, bl = u8.unbind(1)
    y = torch.round(0.299 * r + 0.587 * g + 0.114 * bl)
    cb = torch.round(-0.168736 * r - 0.331264 * g + 0.5 * bl + 128)
    cr = torch.round(0.5 * r - 0.418688 * g - 0.081312 * bl + 128)
    chroma = torch.round(F.avg_pool2d(torch.stack([cb, cr], 1), 2))  # 4:2:0
    y = _jpeg_plane(y, luma_t)
    chroma = torch.stack([_jpeg_plane(chroma[:, i], chroma_t) for i in range(2)], 1)
    cb, cr = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False).unbind(1)  # fancy upsampling
    rgb = torch.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)], 1)
    return (torch.round(rgb).clamp(0, 255)[..., :h, :w] / 255).to(x.dtype)


# ---------------------------------------------------------------------------------------------------- photometric
@op("low_light")
def low_light(x, p, generator):
    dark = _bview(p["exposure"]) * x.clamp_min(0) ** _bview(p["gamma"])
    sigma = _bview(p["noise"] / 255.0)
    std = torch.sqrt(0.5 * sigma**2 + 0.5 * sigma * dark)
    return quantize8(dark + std * _randn(x.shape, x, generator))


def _per_channel(v: torch.Tensor, c: int) -> torch.Tensor:
    """(B, 3) colour parameters -> (B, C, 1, 1); their mean for one channel."""
    return (v if c == 3 else v.mean(1, keepdim=True)).view(-1, c, 1, 1)


@op("underwater")
def underwater(x, p, generator):
    d = scene_depth(x, generator) * _bview(p["distance"])
    t = torch.exp(-_per_channel(p["attenuation"], x.shape[1]) * d)
    return x * t + _per_channel(p["backscatter"], x.shape[1]) * (1 - t)


# ---------------------------------------------------------------------------------------------------- weather
@op("haze")
def haze(x, p, generator):
    t = torch.exp(-_bview(p["beta"]) * scene_depth(x, generator))
    a = (_bview(p["airlight"], 2) * p["tint"]).clamp(0, 1)
    return x * t + _per_channel(a, x.shape[1]) * (1 - t)


def screen(x: torch.Tensor, layer: torch.Tensor, colour: float) -> torch.Tensor:
    return x + layer * (colour - x)


@op("rain")
def rain(x, p, generator):
    b, _, h, w = x.shape
    length = p["length"]
    size = 2 * int(math.ceil(max(p["host"]["length"]))) + 3
    # seeds over the numpy operator's start region [-0.2, 1.2] of each side, density per image area
    mh, mw = int(round(0.2 * h)), int(round(0.2 * w))
    canvas = seeds(x, p["density"] / 100 / 1.96, 120, 255, generator, (h + 2 * mh, w + 2 * mw))
    canvas = canvas * (p["opacity"] > 0).view(-1, 1, 1, 1)
    # OpenCV's anti-aliased lines are wider than their thickness (measured: about 1.3 px for 1, 2.9 px for 2)
    width = 1.3 + 1.6 * (p["width"] - 1)
    # painted streaks cover each other: the layer shows the mean brightness of the streaks over a pixel, not their sum
    value, count = conv_fft(torch.cat([canvas, (canvas > 0).to(canvas.dtype)], 1),
                            segment_kernels(length, p["angle"], width, size)).unbind(1)  # fmt: skip
    streaks = (value / count.clamp_min(1)).unsqueeze(1).clamp(0, 1)
    streaks = streaks[..., mh : mh + h, mw : mw + w]
    k = gaussian_kernels(torch.full((b,), 0.7, device=x.device), 1)
    streaks = filter_per_sample(filter_per_sample(streaks, k[:, :, None]), k[:, None, :])
    return screen(x, streaks * _bview(p["opacity"]), 0.95)


@op("snow")
def snow(x, p, generator):
    from .weather import Snow

    b, _, h, w = x.shape
    size_, density, a = p["size"], p["density"], p["angle"]
    flakes = torch.zeros(b, 1, h, w, device=x.device, dtype=x.dtype)
    for per_px, radius, sigma, streak in Snow._LAYERS:
        # mean flake area (radii uniform in 0.6..1.4 x) plus OpenCV's anti-aliased rim (about 0.4 px, measured)
        r = radius * size_ * 1.026 + 0.4
        k = 2 * (int(math.ceil(radius * max(p["host"]["size"]) * 1.026 + 0.4)) + 1) + 1
        layer = conv_fft(seeds(x, per_px * density, 160, 255, generator), disk_coverage(r, k).clamp(0, 1)).clamp(0, 1)
        if streak > 0:
            lk = torch.clamp(torch.floor(streak * size_), min=3)
            lk = lk + (lk % 2 == 0).float()  # odd, as max(3, int(...) | 1)
            half, one = (lk - 1) / 2, torch.ones_like(lk)
            n = max(3, int(streak * max(p["host"]["size"])) | 1)  # a line through the centre, half a kernel each way along the wind
            seg = torch.maximum(segment_kernels(half, a, one, n), segment_kernels(half, a + 180, one, n))
            seg = seg / seg.sum(dim=(1, 2), keepdim=True)
            layer = filter_per_sample(layer, seg)
        if sigma > 0:
            layer = gaussian_blur(layer, sigma * size_, blur_radius(sigma * max(p["host"]["size"])))
        flakes = 1 - (1 - flakes) * (1 - (layer * 1.5).clamp(0, 1))
    veil = _bview(p["veil"])
    return screen(x * (1 - veil) + veil * 0.9, flakes, 0.98)


@op("raindrop")
def raindrop(x, p, generator):
    b, c, h, w = x.shape
    n_i = torch.round(p["count"] * h * w / 512.0**2)
    m = max(int(round(c * h * w / 512.0**2)) for c in p["host"]["count"])
    if m == 0:
        return x
    u = torch.rand((b, m, 5), generator=generator, device=x.device)
    r = (p["radius"].view(-1, 1) * (0.5 + u[..., 0])).view(b, m, 1, 1)
    elong = (1.0 + 0.4 * u[..., 1]).view(b, m, 1, 1)
    cx, cy = (u[..., 2] * w).view(b, m, 1, 1), (u[..., 3] * h).view(b, m, 1, 1)
    mag = (1.5 + 1.5 * u[..., 4]).view(b, m, 1, 1)
    yy = torch.arange(h, device=x.device, dtype=torch.float32).view(1, 1, h, 1)
    xx = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, 1, w)
    dx, dy = (xx - cx) / r, (yy - cy) / (r * elong)
    q = torch.sqrt(dx**2 + dy**2)
    inside = (q < 1.0) & (torch.arange(m, device=x.device).view(1, m, 1, 1) < n_i.view(-1, 1, 1, 1))
    # each pixel shows the last drop that covers it (drops are painted in order)
    last = (inside * torch.arange(1, m + 1, device=x.device).view(1, m, 1, 1)).argmax(1, keepdim=True)
    covered = inside.any(1, keepdim=True)

    def pick(v):
        return torch.gather(v.expand(b, m, h, w), 1, last)

    map_x = torch.where(covered, pick(cx - dx * r * mag), xx)
    map_y = torch.where(covered, pick(cy - dy * r * mag - r * 0.5), yy)
    alpha = torch.where(inside, ((1 - q) / 0.15).clamp(0, 1), 0).amax(1, keepdim=True)
    hl = torch.exp(-(((dx + 0.35) ** 2 + (dy + 0.4) ** 2) / 0.02)) * 0.6
    shade = torch.where(covered, pick(1 - 0.35 * ((q - 0.7) / 0.3).clamp(0, 1) + hl), 1.0)
    src = gaussian_blur(x, p["blur"], blur_radius(max(p["host"]["blur"])))
    grid = torch.cat([map_x / (w - 1) * 2 - 1, map_y / (h - 1) * 2 - 1], 1).permute(0, 2, 3, 1)
    drops = F.grid_sample(src.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=True).to(x.dtype)
    drops = drops * shade
    return x * (1 - alpha) + drops * alpha


# ---------------------------------------------------------------------------------------------------- batches
def apply_batch(x: torch.Tensor, specs: Sequence[Degradation | None], generator: torch.Generator | None = None) -> torch.Tensor:
    """Degrade each image of ``x`` (B, C, H, W) in [0, 1] by its spec (a ``Compose`` applies its steps in order;
    None leaves the image alone). One operator call per (step position, kind) present in the batch."""
    if x.ndim != 4 or x.shape[0] != len(specs):
        raise ValueError(f"need a (B, C, H, W) batch and one spec per image, got {tuple(x.shape)} and {len(specs)} specs")
    steps = [s.steps if s is not None else () for s in specs]
    out = x.clone()
    for pos in range(max((len(s) for s in steps), default=0)):
        groups: dict[str, list[int]] = {}
        for i, st in enumerate(steps):
            if pos < len(st):
                groups.setdefault(st[pos].name, []).append(i)
        for name, idx in groups.items():
            if name not in OPS:
                raise ValueError(f"no batched operator for {name!r}; batched: {sorted(OPS)}")
            index = host_tensor(idx, torch.long, x.device)
            sub = OPS[name](out.index_select(0, index), params_of([steps[i][pos] for i in idx], x.device), generator)
            out.index_copy_(0, index, sub.clamp(0, 1).to(out.dtype))
    return out
