"""How noisy is an image? Gaussian noise-level estimators (numpy only), used by blind mode to instruct the
noise it finds and by the ``nlm-pca`` / ``bm3d-pca`` baselines.

    >>> sigma = estimate_noise_sigma(img, method="pca")      # on the [0, 1] scale; x 255 for 8-bit units
"""

from __future__ import annotations

import numpy as np


NOISE_ESTIMATORS = ("pca", "wavelet")


def estimate_noise_sigma(img: np.ndarray, method: str = "wavelet") -> float:
    """Gaussian noise sigma (on [0, 1]) of an HWC or HW image.

    ``method="wavelet"``: skimage's wavelet median estimator (Donoho), averaged over channels; texture in the
    finest diagonal subband reads as noise, so it over-states sigma on textured images.
    ``method="pca"``: the patch-PCA estimator of Chen, Zhu and Heng (ICCV 2015, "An efficient statistical method
    for image noise level estimation") on colour patches: natural images fill only a few principal directions of
    their 8 x 8 x 3 patches (the channels move together), so the smallest eigenvalues of the patch covariance are
    noise alone; sigma^2 is the mean of the largest set of smallest eigenvalues whose mean is also its median. It
    assumes noise independent across channels, so a grey image (one channel, or three identical ones) gets the
    wavelet estimate instead, which reads one channel better (``benchmarks/noise_sigma.py``). Patches shrink (from
    8 px down to 2) on small images, so that there are at least 20 patches per patch dimension.
    """
    img = np.asarray(img, dtype=np.float32)
    if method not in NOISE_ESTIMATORS:
        raise ValueError(f"unknown noise estimator {method!r}; use one of {NOISE_ESTIMATORS}")
    grey = img.ndim == 2 or img.shape[-1] == 1 or all(np.array_equal(img[..., 0], img[..., c]) for c in range(1, img.shape[-1]))
    if method == "wavelet" or grey:
        from skimage.restoration import estimate_sigma

        return float(estimate_sigma(img, channel_axis=-1 if img.ndim == 3 else None, average_sigmas=True))
    return _pca_noise_sigma(img)


def _pca_noise_sigma(img: np.ndarray, max_patch: int = 8) -> float:
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"the PCA noise estimator needs an HW or HWC image, got shape {img.shape}")
    (h, w), c = img.shape[:2], img.shape[2]
    if min(h, w) < 4:
        raise ValueError(f"the PCA noise estimator needs an image of at least 4 x 4 px, got {img.shape[:2]}")
    # the largest patch, then the largest stride (at most 3), that still leaves 20 patches per dimension: with
    # fewer, the sample eigenvalues of pure noise spread out and the estimate drops
    for patch in range(min(max_patch, min(h, w) // 2), 1, -1):
        stride = next((s for s in (3, 2, 1) if ((h - patch) // s + 1) * ((w - patch) // s + 1) >= 20 * c * patch**2), 0)
        if stride:
            break
    patch, stride = (patch, stride) if stride else (2, 1)
    while ((h - patch) // stride + 1) * ((w - patch) // stride + 1) > 80_000:  # bounded memory on huge images
        stride += 1
    win = np.lib.stride_tricks.sliding_window_view(img.astype(np.float64), (patch, patch), axis=(0, 1))
    x = win[::stride, ::stride].reshape(-1, img.shape[2] * patch * patch)  # one row per patch, all channels
    x = x - x.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(x.T @ x / len(x)))  # ascending
    for n in range(len(eig), 0, -1):  # drop the largest eigenvalue until the rest is symmetric about its mean
        tail = eig[:n]
        tau = tail.mean()
        if np.count_nonzero(tail > tau) == np.count_nonzero(tail < tau):
            return float(np.sqrt(max(tau, 0.0)))
    return float(np.sqrt(max(eig[0], 0.0)))
