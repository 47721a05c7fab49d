"""Evaluation tasks: (test set, how the degraded input is made, metric convention).

Task names are ``SET:degradation`` with an optional ``@severity``:

* ``CBSD68:noise25``  AWGN sigma 25 on the clean set (uint8 re-quantised, the AIO protocol);
* ``LIVE1:jpeg10``    JPEG quality 10 (OpenCV/libjpeg, 4:2:0 chroma) of the clean set;
* ``Kodak24:rain``    any name string of the degradation registry, severity 0.5 unless ``@s`` is given
  (``Kodak24:rain@0.8``, ``Kodak24:rain+snow+noise25``);
* ``Rain100L:paired``  the set's own ``lq/`` inputs against ``gt/`` (any real paired set: ``SET/lq`` and ``SET/gt``
  holding files with the same stems).

Inputs are synthesised from the clean image with a per-image seed: ``crc32("SET/stem/degradation")``, so
every run, machine and method sees the same pixels. Images are centre-cropped to a multiple of 16 before
degradation (PromptIR's ``crop_img``), so metrics need no further crop. Grey sets (Set12, BSD68, Classic5)
are degraded on one channel and scored on one channel.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import degradations as D
from ..images import load_image
from ..metrics import center_crop_multiple

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}

# The papers' protocol groups on the real test sets they use. A set that is not in the data root is skipped
# with a note in every table (GoPro here); a subset is named as such (SOTS_outdoor_sample: 2 of 500 pairs).
# The "-synth" presets are synthetic stand-ins from our registry on Kodak24, named so that no table can pass
# one for the other.
PRESETS: dict[str, list[str]] = {
    # PromptIR / DFPIR / Perceive-IR / ClearAIR three-task setting: noise (CBSD68 at 15/25/50), rain (Rain100L
    # test, 100 pairs), haze (SOTS outdoor)
    "aio3": [
        "CBSD68:noise15",
        "CBSD68:noise25",
        "CBSD68:noise50",
        "Rain100L:paired",
        "SOTS_outdoor_sample:paired",
    ],
    "aio3-synth": ["CBSD68:noise15", "CBSD68:noise25", "CBSD68:noise50", "Kodak24:rain", "Kodak24:haze"],
    # the five-task setting: + motion blur (GoPro) and low light (LOL v1 eval15)
    "aio5": [
        "CBSD68:noise25",
        "Rain100L:paired",
        "SOTS_outdoor_sample:paired",
        "GoPro:paired",
        "LOL_eval15:paired",
    ],
    "aio5-synth": ["CBSD68:noise25", "Kodak24:rain", "Kodak24:haze", "Kodak24:motion_blur", "Kodak24:low_light"],
    # every real paired set: rain, haze, low light, underwater (EUVP: a 23-pair sample)
    "real": ["Rain100L:paired", "SOTS_outdoor_sample:paired", "LOL_eval15:paired", "EUVP_sample:paired"],
    # Defusion Table 1: motion/defocus deblur, desnow, dehaze, raindrop, derain, real noise, JPEG (LIVE1). Only
    # LIVE1 is the paper's set; the other seven are synthetic stand-ins on Kodak24 (the paper's sets are absent).
    "defusion8": [
        "Kodak24:motion_blur",
        "Kodak24:defocus",
        "Kodak24:snow",
        "Kodak24:haze",
        "Kodak24:raindrop",
        "Kodak24:rain",
        "Kodak24:poisson",
        "LIVE1:jpeg10",
    ],
    # Defusion Table 3: rain, snow and noise (sigma 25) in all six orders (synthetic in the paper too, on WED)
    "mixed6": [
        "Kodak24:rain+snow+noise25",
        "Kodak24:rain+noise25+snow",
        "Kodak24:snow+rain+noise25",
        "Kodak24:snow+noise25+rain",
        "Kodak24:noise25+rain+snow",
        "Kodak24:noise25+snow+rain",
    ],
    "noise": [f"{s}:noise{n}" for s in ("CBSD68", "Kodak24", "Urban100", "BSD68", "Set12") for n in (15, 25, 50)],
    "jpeg": [f"{s}:jpeg{q}" for s in ("LIVE1", "Classic5") for q in (10, 20, 30, 40)],
}


# What the real paired sets show, as registry names: the instruction a user would give for them.
PAIRED_DEGRADATIONS = {
    "Rain100L": "rain",
    "Rain100L_sample": "rain",
    "RainMFDNet_sample": "rain",
    "SOTS_outdoor_sample": "haze",
    "SOTS_outdoor": "haze",
    "LOL_eval15": "low_light",
    "EUVP_sample": "underwater",
    "GoPro": "motion_blur",
}


@dataclass(frozen=True)
class Task:
    name: str  # the full "SET:degradation[@severity]" string
    dataset: str
    degradation: str  # registry name string, or "paired"
    severity: float = 0.5

    @property
    def paired(self) -> bool:
        return self.degradation == "paired"

    @property
    def degradation_names(self) -> str | None:
        """The task's degradations as registry names joined by "+" (``rain+snow+noise``): the instruction a user
        would give. For a real paired set, what the set is known to show; None for a set we do not know."""
        if self.paired:
            return PAIRED_DEGRADATIONS.get(self.dataset)
        return "+".join(step.name for step in D.parse(self.degradation, severity=self.severity).steps)

    def image_seed(self, stem: str) -> int:
        return zlib.crc32(f"{self.dataset}/{stem}/{self.degradation}".encode())

    def spec(self, stem: str) -> D.Degradation:
        """The degradation applied to image ``stem`` (fixed by the per-image seed)."""
        return D.parse(self.degradation, severity=self.severity, rng=np.random.default_rng(self.image_seed(stem)))


def parse_task(name: str) -> Task:
    name = name.strip()
    if ":" not in name:
        raise ValueError(f"task {name!r} must look like SET:degradation (e.g. CBSD68:noise25) or be a preset {sorted(PRESETS)}")
    dataset, deg = name.split(":", 1)
    severity = 0.5
    if "@" in deg:
        deg, s = deg.split("@", 1)
        severity = D.check_severity(s)
    if not dataset or not deg:
        raise ValueError(f"task {name!r} must look like SET:degradation")
    if deg != "paired":
        D.parse(deg, severity=severity)  # raises ValueError with the valid names
    return Task(name, dataset, deg, severity)


def parse_tasks(spec: str | list[str]) -> list[Task]:
    """Comma-separated task names and/or preset names, in order, without duplicates."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        for n in PRESETS.get(item, [item]):
            if n not in names:
                names.append(n)
    if not names:
        raise ValueError("no tasks given")
    return [parse_task(n) for n in names]


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []


def discover_paired_sets(data_root) -> list[str]:
    """Names of the sets under ``data_root`` with both ``lq/`` and ``gt/`` holding images."""
    root = Path(data_root)
    return sorted(d.name for d in root.iterdir() if d.is_dir() and list_images(d / "lq") and list_images(d / "gt"))


@dataclass
class Sample:
    stem: str
    lq: np.ndarray  # float32 HWC in [0, 1], 1 or 3 channels, cropped to a multiple of 16
    gt: np.ndarray
    spec: dict | None  # the degradation spec as a dict (None for real paired sets)


def iter_samples(task: Task, data_root, limit: int | None = None):
    """Yield the task's (input, target) pairs in sorted file order."""
    root = Path(data_root) / task.dataset
    gt_files = list_images(root / "gt")
    if not gt_files:
        raise FileNotFoundError(f"task {task.name}: no images in {root / 'gt'} (expected {task.dataset}/gt/*.png)")
    if task.paired:
        lq_by_stem = {p.stem: p for p in list_images(root / "lq")}
        if not lq_by_stem:
            raise FileNotFoundError(f"task {task.name}: no images in {root / 'lq'}")
        missing = [p.name for p in gt_files if p.stem not in lq_by_stem]
        if missing:
            raise FileNotFoundError(f"task {task.name}: no lq/ file for {missing[:5]} (pairs share a file stem)")
    for path in gt_files[:limit]:
        gt = load_image(path, rgb=False)
        if task.paired:
            lq = load_image(lq_by_stem[path.stem], rgb=False)
            if lq.shape[:2] != gt.shape[:2]:
                raise ValueError(f"task {task.name}: {path.stem} lq {lq.shape[:2]} and gt {gt.shape[:2]} differ in size")
            if lq.shape[-1] != gt.shape[-1]:
                lq, gt = (np.repeat(x, 3, -1) if x.shape[-1] == 1 else x for x in (lq, gt))
            yield Sample(path.stem, center_crop_multiple(lq), center_crop_multiple(gt), None)
        else:
            gt = np.ascontiguousarray(center_crop_multiple(gt))
            spec = task.spec(path.stem)
            rng = np.random.default_rng(task.image_seed(path.stem) + 1)
            yield Sample(path.stem, spec.apply(gt, rng), gt, spec.to_dict())
