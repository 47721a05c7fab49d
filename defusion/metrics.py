"""Full-reference metrics with the papers' conventions written down.

Default convention (PromptIR / DFPIR all-in-one benchmarks):
* images are float RGB in [0, 1] (``data_range`` 1), HWC;
* both images are centre-cropped to a multiple of 16 (``crop_multiple=16``; ``None`` or 1 disables);
* PSNR and SSIM on all RGB channels (``y_channel=True`` switches to the BT.601 luma Y in [16, 235] / 255,
  as the deraining and JPEG literature often reports);
* SSIM with scikit-image's default 7 x 7 uniform window (what the reference evaluators call);
  ``gaussian=True`` switches to Wang et al.'s 11 x 11 Gaussian window (sigma 1.5, population covariance);
* ``border`` pixels are shaved off every side after cropping (0 by default; super-resolution uses the scale).

The arithmetic is scikit-image's (``skimage.metrics``); this module only prepares the images.
LPIPS uses the ``lpips`` package with its real ImageNet trunk, loaded from a local file: without the file it
is reported as unavailable (``None``), never computed with a random trunk.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .images import check_image


def center_crop_multiple(img: np.ndarray, multiple: int | None = 16) -> np.ndarray:
    """Centre-crop H and W down to multiples of ``multiple`` (PromptIR's ``crop_img(base=16)``)."""
    if not multiple or multiple <= 1:
        return img
    h, w = img.shape[:2]
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"image of {h}x{w} is smaller than the crop multiple {multiple}")
    top, left = (h - nh) // 2, (w - nw) // 2
    return img[top : top + nh, left : left + nw]


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB image in [0, 1], studio range: Y in [16, 235] / 255 (MATLAB's rgb2ycbcr)."""
    w = np.array([65.481, 128.553, 24.966], np.float64) / 255.0
    return (img.astype(np.float64) @ w + 16.0 / 255.0)[..., None]


def prepare(pred, target, crop_multiple: int | None = 16, y_channel: bool = False, border: int = 0):
    """Validate, crop and (optionally) convert a prediction/target pair; returns float64 HWC arrays."""
    pred = check_image(np.asarray(pred), "prediction")
    target = check_image(np.asarray(target), "target")
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    pred, target = center_crop_multiple(pred, crop_multiple), center_crop_multiple(target, crop_multiple)
    if y_channel:
        if pred.shape[-1] != 3:
            raise ValueError("y_channel=True needs RGB images")
        pred, target = rgb_to_y(pred), rgb_to_y(target)
    if border:
        if 2 * border >= min(pred.shape[:2]):
            raise ValueError(f"border {border} leaves nothing of a {pred.shape[0]}x{pred.shape[1]} image")
        pred, target = pred[border:-border, border:-border], target[border:-border, border:-border]
    return pred.astype(np.float64), target.astype(np.float64)


def psnr(pred, target, crop_multiple: int | None = 16, y_channel: bool = False, border: int = 0) -> float:
    """PSNR in dB of ``pred`` against ``target`` (float HWC in [0, 1]); ``inf`` for identical images."""
    p, t = prepare(pred, target, crop_multiple, y_channel, border)
    if np.array_equal(p, t):
        return float("inf")
    return float(peak_signal_noise_ratio(t, p, data_range=1.0))


def ssim(
    pred, target, crop_multiple: int | None = 16, y_channel: bool = False, border: int = 0, gaussian: bool = False
) -> float:
    """SSIM (mean over channels). ``gaussian=False``: 7 x 7 uniform window (the AIO evaluators);
    ``gaussian=True``: Wang et al. 2004 (11 x 11 Gaussian, sigma 1.5, population covariance)."""
    p, t = prepare(pred, target, crop_multiple, y_channel, border)
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False) if gaussian else {}
    if min(p.shape[:2]) < (11 if gaussian else 7):
        raise ValueError(f"SSIM needs images of at least {11 if gaussian else 7} pixels a side, got {p.shape[:2]}")
    return float(structural_similarity(t, p, data_range=1.0, channel_axis=-1, **kw))


class LPIPS:
    """LPIPS distance with the real trunk, or ``available == False`` (and ``__call__`` returning None).

    Args:
        net: ``"alex"`` (the usual choice for evaluation), ``"vgg"`` or ``"squeeze"``.
        trunk_weights: path to torchvision's ImageNet weights of the trunk; default: the torch hub cache.
        device: torch device for the network.
    """

    def __init__(self, net: str = "alex", trunk_weights=None, device: str = "cpu"):
        from .losses.lpips import LPIPSUnavailable, build_lpips

        self.device = device
        try:
            self.model, self.info = build_lpips(net, trunk_weights, allow_random_trunk=False)
            self.model.to(device)
            self.reason = None
        except (LPIPSUnavailable, FileNotFoundError) as e:
            self.model, self.info, self.reason = None, {}, str(e)

    @property
    def available(self) -> bool:
        return self.model is not None

    def __call__(self, pred, target, crop_multiple: int | None = 16) -> float | None:
        if self.model is None:
            return None
        import torch

        p, t = prepare(pred, target, crop_multiple)
        if p.shape[-1] == 1:
            p, t = np.repeat(p, 3, -1), np.repeat(t, 3, -1)

        def to_t(x):
            return torch.from_numpy(x).float().permute(2, 0, 1)[None].to(self.device) * 2 - 1

        with torch.no_grad():
            return float(self.model(to_t(p), to_t(t)).item())


def fid_available() -> bool:
    """FID needs torchmetrics' Inception feature extractor (torch-fidelity) and its weights in the torch hub
    cache; it is optional and never downloaded."""
    try:
        import torch
        import torch_fidelity  # noqa: F401
    except ImportError:
        return False
    from pathlib import Path

    ckpt = Path(torch.hub.get_dir()) / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    return ckpt.is_file()


def fid(preds, targets) -> float | None:
    """Frechet Inception Distance between two lists of float HWC RGB images, or None when unavailable."""
    if not fid_available():
        return None
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(normalize=True)
    for imgs, real in ((targets, True), (preds, False)):
        for im in imgs:
            x = torch.from_numpy(np.ascontiguousarray(check_image(np.asarray(im)))).permute(2, 0, 1)[None]
            metric.update(x.float(), real=real)
    return float(metric.compute())
