"""Methods the harness can run: ``method(rgb_image) -> rgb_image`` on float32 HWC in [0, 1].

Every method is *blind*: it sees only the degraded image, never the task's degradation or its parameters
(noise levels are estimated from the image, as a user without the ground truth would). Built in:

* ``identity``: returns the input (the "input PSNR" row of every table);
* ``nlm``: OpenCV non-local means (``fastNlMeansDenoisingColored``), h from the estimated noise sigma;
* ``bm3d``: CBM3D from the ``bm3d`` package, sigma estimated by scikit-image's wavelet estimator;
* ``nlm-pca``, ``bm3d-pca``: the same with the patch-PCA sigma (``estimate_noise_sigma(method="pca")``), the
  estimator the shipped Defusion's blind mode uses, so both sides of a comparison read the noise alike;
* ``dcp``: dark-channel-prior dehazing (He et al. 2009) with a guided-filter-refined transmission;
* ``unsharp``: unsharp masking (Gaussian sigma 2 px, amount 1);
* ``wiener``: Wiener deconvolution with an assumed Gaussian PSF (sigma 1.5 px; scikit-image).

* any saved ``DefusionPipeline`` folder (a path holding ``model_index.json``): run blind (``instruction="auto"``)
  when the pipeline has a degradation identifier, else with no instruction; 4 DDIM steps, seed 0;
* any saved ``RestorerPipeline`` folder (DFPIR, PromptIR, ...; ``dfpir-small`` ships): run blind
  (``degradation="auto"``) when it has an identifier, else without a degradation (models that need one raise);
* ``default``: the shipped default model (``defusion.weights.DEFAULT_MODEL``), blind;
* ``NAME:instructed`` for any of these pipelines: told each task's degradations (``Task.degradation_names``:
  ``rain+snow+noise`` for ``Kodak24:rain+snow+noise25``, ``haze`` for SOTS) instead of detecting them; the one
  non-blind method, as a user who knows what is wrong with the photo would run it.

More methods register with ``register_method(name, factory)``; a ``factory()`` returns a callable with an
optional ``num_parameters`` attribute.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Callable

import cv2
import numpy as np

from ..noise_level import estimate_noise_sigma

MethodFn = Callable[[np.ndarray], np.ndarray]
_METHODS: dict[str, Callable[[], MethodFn]] = {}


def register_method(name: str, factory: Callable[[], MethodFn]) -> None:
    _METHODS[name] = factory


def load_plugin(spec: str) -> list[str]:
    """Import a Python file (``benchmarks/anchors.py``) or module (``mypkg.methods``) and call its ``register()``,
    which registers more methods (the optional learned anchors live in such a file); returns what it registered."""
    import importlib
    import importlib.util
    from pathlib import Path

    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise FileNotFoundError(f"plugin {spec}: no such file")
        module_spec = importlib.util.spec_from_file_location(f"defusion_plugin_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(spec)
    if not callable(getattr(module, "register", None)):
        raise ValueError(f"plugin {spec} has no register() function")
    before = set(_METHODS)
    names = module.register()
    return list(names) if names else sorted(set(_METHODS) - before)


def method_names() -> list[str]:
    return sorted(_METHODS)


class PipelineMethod:
    """A saved DefusionPipeline or RestorerPipeline as a blind method of the harness. ``instruction``: "auto",
    degradation names or None (a DefusionPipeline's instruction, a RestorerPipeline's ``degradation``);
    ``precision``: the pipeline's ``set_precision`` (fp32 by default, so that numbers agree across machines);
    ``scheduler``: a sampler of ``defusion.diffusion.SAMPLERS`` that replaces a DefusionPipeline's own (DDIM)."""

    def __init__(self, folder, instruction="auto", steps: int | None = None, tile_size: int | None = 512,
                 self_ensemble: bool | int | None = None, precision: str = "fp32", scheduler: str | None = None):
        import torch

        from ..pipelines import RestorerPipeline, pipeline_class

        cls = pipeline_class(folder)
        self.restorer = cls is RestorerPipeline
        if self.restorer and self_ensemble not in (False, None, 0, 1):
            raise ValueError("self_ensemble is a DefusionPipeline option; a RestorerPipeline runs one pass")
        if self.restorer and scheduler is not None:
            raise ValueError("scheduler is a DefusionPipeline option; a RestorerPipeline runs one pass")
        self.pipe = cls.from_pretrained(folder, dtype=torch.float32)
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.set_precision(precision)
        if scheduler is not None:
            from ..diffusion import make_sampler

            self.pipe.scheduler = make_sampler(scheduler, self.pipe.scheduler)
        self.scheduler_name = scheduler
        blind = isinstance(instruction, str) and instruction.strip().lower() == "auto"
        self.instruction = None if blind and self.pipe.identifier is None else instruction
        self.steps, self.tile_size, self.self_ensemble = steps, tile_size, self_ensemble
        names = ("restorer",) if self.restorer else ("unet", "bridge", "adapter", "degradation_tokenizer")
        self.num_parameters = sum(p.numel() for n in names for p in getattr(self.pipe, n).parameters())

    @property
    def sampler(self) -> str:
        """What one restoration runs, in words: ``"one pass"`` for a restorer; for a Defusion pipeline the sampler's
        steps and self-ensemble views (the ones given, else the pipeline's ``default_steps`` /
        ``default_self_ensemble``),
        e.g. ``"1 DDIM step x up to 4 views"``: an image whose degradation allows fewer views gets fewer (JPEG: one,
        ``DefusionPipeline.ensemble_views``)."""
        if self.restorer:
            return "one pass"
        from ..ensemble import ensemble_passes

        cfg = self.pipe.config
        steps = cfg.default_steps if self.steps is None else self.steps
        views = ensemble_passes(cfg.default_self_ensemble if self.self_ensemble is None else self.self_ensemble)
        name = self.scheduler_name or type(self.pipe.scheduler).__name__.removesuffix("Scheduler")
        name = "DDIM" if name == "ddim" else name
        shown = f"up to {views} views" if views > 1 else "1 view"
        return f"{steps} {name} step{'s' if steps != 1 else ''} x {shown}"

    def for_task(self, task) -> "PipelineMethod":
        """The method to run on ``task``: itself, or (``instruction="task"``) a copy told the task's degradations."""
        if self.instruction != "task":
            return self
        names = task.degradation_names
        if names is None:
            raise ValueError(f"no known degradation for {task.name} to instruct with")
        told = copy.copy(self)
        told.instruction = names
        return told

    def __call__(self, img: np.ndarray) -> np.ndarray:
        import torch

        if self.instruction == "task":
            raise ValueError("an instructed method runs per task: call method.for_task(task)(img)")
        if self.restorer:
            return self.pipe(img, degradation=self.instruction, output_type="np", tile_size=self.tile_size).images[0]
        out = self.pipe(img, instruction=self.instruction, num_inference_steps=self.steps, output_type="np",
                        generator=torch.Generator().manual_seed(0), tile_size=self.tile_size,
                        self_ensemble=self.self_ensemble)  # fmt: skip
        return out.images[0]


METHOD_OPTIONS = ("instructed", "bf16")  # suffixes of a pipeline method's name: told each task's degradations,
# bfloat16 arithmetic (PipelineMethod's precision)


def load_method(name: str) -> MethodFn:
    """A method by registered name, a shipped model's name (``defusion-small``, ``dfpir-small``) or a saved
    pipeline folder, each optionally followed by ``:instructed`` and/or ``:bf16``."""
    if name in _METHODS:
        return _METHODS[name]()
    from pathlib import Path

    from ..weights import available, resolve

    base, options = name, set()
    while base.rsplit(":", 1)[-1] in METHOD_OPTIONS and ":" in base:
        base, option = base.rsplit(":", 1)
        options.add(option)
    if base in available() or base == "default":
        base = str(resolve(base))
    if (Path(base) / "model_index.json").is_file():
        return PipelineMethod(base, instruction="task" if "instructed" in options else "auto",
                              precision="bf16" if "bf16" in options else "fp32")  # fmt: skip
    raise ValueError(f"unknown method {name!r}; registered: {', '.join(method_names())}, shipped: "
                     f"{', '.join(available())} or default (each may end in :instructed and/or :bf16), or a pipeline "
                     "folder")  # fmt: skip


def identity(img: np.ndarray) -> np.ndarray:
    return img.copy()


def nlm(img: np.ndarray, estimator: str = "wavelet") -> np.ndarray:
    # h = 0.6 sigma, 5 x 5 patches, 21 x 21 search: chosen on 8 BSD400 (training-pool) images at sigma
    # 15/25/50 with the wavelet sigma, never on a test set
    sigma = estimate_noise_sigma(img, method=estimator) * 255.0
    h = max(1.0, 0.6 * sigma)
    u8 = np.round(img * 255).astype(np.uint8)
    out = cv2.fastNlMeansDenoisingColored(u8, None, h, h, 5, 21)
    return out.astype(np.float32) / 255.0


def bm3d(img: np.ndarray, estimator: str = "wavelet") -> np.ndarray:
    import bm3d as _bm3d

    sigma = max(estimate_noise_sigma(img, method=estimator), 1e-3)
    out = _bm3d.bm3d_rgb(img.astype(np.float64), sigma_psd=sigma)
    return np.clip(out, 0, 1).astype(np.float32)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide (box means via OpenCV)."""
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    a = (box(guide * src) - mean_i * mean_p) / (box(guide * guide) - mean_i**2 + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def dark_channel_prior(img: np.ndarray, patch: int = 15, omega: float = 0.95, t0: float = 0.1) -> np.ndarray:
    """Single-image dehazing by the dark channel prior (He, Sun and Tang, CVPR 2009)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    dark = cv2.erode(img.min(axis=-1), kernel)
    n = max(1, dark.size // 1000)  # brightest 0.1 % of the dark channel
    idx = np.argpartition(dark.ravel(), -n)[-n:]
    airlight = np.maximum(img.reshape(-1, 3)[idx].max(axis=0), 1e-3)
    t = 1.0 - omega * cv2.erode((img / airlight).min(axis=-1), kernel)
    t = guided_filter(img.mean(axis=-1).astype(np.float32), t.astype(np.float32), radius=40, eps=1e-3)
    t = np.clip(t, t0, 1.0)[..., None]
    return np.clip((img - airlight) / t + airlight, 0, 1).astype(np.float32)


def unsharp(img: np.ndarray, sigma: float = 2.0, amount: float = 1.0) -> np.ndarray:
    blurred = cv2.GaussianBlur(img, (0, 0), sigma).reshape(img.shape)
    return np.clip(img + amount * (img - blurred), 0, 1).astype(np.float32)


def wiener(img: np.ndarray, psf_sigma: float = 1.5, balance: float = 0.02) -> np.ndarray:
    from skimage.restoration import wiener as _wiener

    r = int(np.ceil(3 * psf_sigma))
    x = np.arange(-r, r + 1)
    g = np.exp(-(x**2) / (2 * psf_sigma**2))
    psf = np.outer(g, g)
    psf /= psf.sum()
    # pad by reflection so the circular deconvolution does not ring at the borders
    pad = 4 * r
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = np.stack([_wiener(padded[..., c], psf, balance, clip=False) for c in range(img.shape[-1])], axis=-1)
    return np.clip(out[pad:-pad, pad:-pad], 0, 1).astype(np.float32)


for _name, _fn in {
    "identity": identity,
    "nlm": nlm,
    "bm3d": bm3d,
    "nlm-pca": partial(nlm, estimator="pca"),
    "bm3d-pca": partial(bm3d, estimator="pca"),
    "dcp": dark_channel_prior,
    "unsharp": unsharp,
    "wiener": wiener,
}.items():
    register_method(_name, (lambda f: (lambda: f))(_fn))
