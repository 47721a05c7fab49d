"""Lossy compression: JPEG at a given quality (blocking, ringing, chroma bleeding)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .base import Degradation, register


@register
@dataclass(frozen=True)
class JPEG(Degradation):
    """Encode and decode as baseline JPEG at ``quality`` (1-100) with 4:2:0 chroma subsampling, as
    libjpeg does by default. quality = 100 - 90 x severity; even quality 100 is lossy, so severity 0 is
    near-identity (about 40 dB PSNR), not exact."""

    quality: int = 30

    name = "jpeg"
    aliases = ("compression", "jpeg_compression", "deblock")
    dihedral_modes = (0,)  # 8 x 8 blocks from the top-left corner, asymmetric quantisation tables
    grid_shifts = False
    primary = "quality"
    identity_at_zero = False

    def __post_init__(self):
        self._check("quality", 1, 100)

    @classmethod
    def from_severity(cls, severity, rng):
        return cls(quality=int(round(100 - 90 * severity)))

    def _apply(self, img, rng):
        u8 = np.round(np.clip(img, 0, 1) * 255.0).astype(np.uint8)
        if img.shape[-1] == 3:
            u8 = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(self.quality)])
        if not ok:
            raise RuntimeError("OpenCV failed to encode the image as JPEG")
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR if img.shape[-1] == 3 else cv2.IMREAD_GRAYSCALE)
        if img.shape[-1] == 3:
            dec = cv2.cvtColor(dec, cv2.COLOR_BGR2RGB)
        return dec.reshape(img.shape).astype(np.float32) / 255.0
