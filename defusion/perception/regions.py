"""RegionMasks: at most 16 binary region masks per image, for ClearAIR's semantic cross-attention.

Backends:
* ``sam``: a transformers ``SamModel`` + ``SamProcessor`` from a local folder (SAM / SAM-HQ weights). A
  ``points_per_side`` x ``points_per_side`` grid of point prompts (4 x 4 = 16, as the reference), the best of
  the three multimask outputs per point, kept when its predicted IoU is at least ``pred_iou_thresh`` (0.70),
  sorted by predicted IoU;
* ``slic`` (offline fallback, no weights): SLIC superpixels (scikit-image) merged by Ward clustering of their
  mean Lab colour and centroid into at most ``max_regions`` regions, sorted by area.

Both return (max_regions, H, W) float masks truncated or zero-padded to ``max_regions``; when nothing is found,
mask 0 covers the whole image. ``cache_dir`` stores results by image hash (packed bits, ``.npz``) so training
epochs do not segment the same image twice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..images import check_image


def _pad(masks: list[np.ndarray], n: int, hw: tuple[int, int]) -> np.ndarray:
    out = np.zeros((n, *hw), dtype=np.float32)
    for i, m in enumerate(masks[:n]):
        out[i] = m
    if not masks:
        out[0] = 1.0
    return out


def slic_regions(image: np.ndarray, max_regions: int = 16, n_segments: int = 96, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels merged into <= ``max_regions`` disjoint regions (largest first): (max_regions, H, W)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from skimage.color import rgb2lab
    from skimage.segmentation import slic

    h, w = image.shape[:2]
    seg = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    ids = np.unique(seg)
    if len(ids) > max_regions:
        lab = rgb2lab(image)
        yy, xx = np.mgrid[:h, :w]
        feats = []
        for i in ids:
            m = seg == i
            feats.append([*lab[m].mean(0), 100 * yy[m].mean() / h, 100 * xx[m].mean() / w])
        groups = fcluster(linkage(np.asarray(feats), "ward"), max_regions, criterion="maxclust")
        seg = groups[np.searchsorted(ids, seg)]
    masks = [(seg == i) for i in np.unique(seg)]
    masks.sort(key=lambda m: -m.sum())
    return _pad([m.astype(np.float32) for m in masks], max_regions, (h, w))


class RegionMasks:
    """Callable: images -> (B, max_regions, H, W) float masks. See the module docstring."""

    def __init__(self, sam_model=None, sam_processor=None, max_regions: int = 16, points_per_side: int = 4,
                 pred_iou_thresh: float = 0.70, cache_dir=None, slic_segments: int = 96):  # fmt: skip
        if (sam_model is None) != (sam_processor is None):
            raise ValueError("give both sam_model and sam_processor, or neither (SLIC fallback)")
        self.sam_model, self.sam_processor = sam_model, sam_processor
        self.max_regions, self.points_per_side, self.pred_iou_thresh = max_regions, points_per_side, pred_iou_thresh
        self.slic_segments = slic_segments
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> "RegionMasks":
        """SAM from a local folder holding a ``SamModel`` and its ``SamProcessor``."""
        from transformers import SamModel, SamProcessor

        model = SamModel.from_pretrained(path).eval()
        model.requires_grad_(False)
        return cls(model, SamProcessor.from_pretrained(path), **kwargs)

    @property
    def backend(self) -> str:
        return "sam" if self.sam_model is not None else "slic"

    def _key(self, img: np.ndarray) -> str:
        h = hashlib.sha1(np.ascontiguousarray((img * 255 + 0.5).astype(np.uint8)).tobytes())
        h.update(f"{self.backend}-{self.max_regions}-{self.points_per_side}-{self.pred_iou_thresh}-{self.slic_segments}".encode())
        return h.hexdigest()

    @torch.no_grad()
    def _sam(self, img: np.ndarray) -> np.ndarray:
        n = self.points_per_side
        h, w = img.shape[:2]
        pts = [[[(j + 0.5) * w / n, (i + 0.5) * h / n]] for i in range(n) for j in range(n)]
        inputs = self.sam_processor(images=(img * 255 + 0.5).astype(np.uint8), input_points=[pts], return_tensors="pt")
        dev = next(self.sam_model.parameters()).device
        outputs = self.sam_model(**{k: v.to(dev) for k, v in inputs.items() if k in ("pixel_values", "input_points")},
                                 multimask_output=True)  # fmt: skip
        masks = self.sam_processor.image_processor.post_process_masks(
            outputs.pred_masks.cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0]  # (points, 3, H, W) bool
        iou = outputs.iou_scores[0].float().cpu()  # (points, 3)
        best = iou.argmax(dim=1)
        kept = [(float(iou[p, best[p]]), masks[p, best[p]].numpy()) for p in range(len(best))]
        kept = [(s, m) for s, m in kept if s >= self.pred_iou_thresh and m.any()]
        kept.sort(key=lambda t: -t[0])
        return _pad([m.astype(np.float32) for _, m in kept], self.max_regions, (h, w))

    def masks_for(self, image) -> np.ndarray:
        """One float HWC RGB image in [0, 1] -> (max_regions, H, W)."""
        img = check_image(image, channels=(3,))
        path = self.cache_dir / f"{self._key(img)}.npz" if self.cache_dir else None
        if path is not None and path.is_file():
            with np.load(path) as z:
                return np.unpackbits(z["bits"], count=int(np.prod(z["shape"]))).reshape(z["shape"]).astype(np.float32)
        out = self._sam(img) if self.sam_model is not None else slic_regions(img, self.max_regions, self.slic_segments)
        if path is not None:
            np.savez_compressed(path, bits=np.packbits(out.astype(bool)), shape=np.asarray(out.shape))
        return out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, max_regions, H, W) float masks on the same device."""
        arr = ((images.detach().float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
        return torch.from_numpy(np.stack([self.masks_for(a) for a in arr])).to(images.device)
