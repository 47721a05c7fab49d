"""What both defusion pipelines share: loading, saving and progress reporting.

* ``from_pretrained`` takes a saved folder, a hub id, or the name of a shipped model (``defusion.weights``), and
  says which pipeline class a folder holds when it is loaded with the wrong one.
* ``save_pretrained`` writes folders that hold no machine-local path (no ``_name_or_path`` in any JSON).
* ``report_progress(bar)`` sends a call's progress (one update per model evaluation) to the caller's bar, so a
  command restoring many images shows one bar whose total ``num_evaluations`` predicts.
* ``set_precision("bf16" | "fp32" | "auto")`` runs the restoring networks' arithmetic in bfloat16 (autocast) while
  images, the sampler state and the scheduler stay float32; ``native_bf16(device)`` says where that pays.
* ``register_with_diffusers`` puts the pipeline classes into the ``diffusers`` namespace, where
  ``diffusers.DiffusionPipeline.from_pretrained(folder)`` looks a folder's ``_class_name`` up, so the generic
  loader returns a ``DefusionPipeline`` / ``RestorerPipeline`` once ``defusion.pipelines`` is imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import diffusers
import torch
from diffusers import DiffusionPipeline

from ..weights import available, resolve

logger = logging.getLogger(__name__)
LOCAL_KEYS = ("_name_or_path",)
PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16(device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CPU with AVX512-BF16 or AMX (elsewhere oneDNN emulates
    bfloat16, slower than float32), or a CUDA GPU that supports it."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch's own CPU feature probes
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def check_precision(precision) -> str:
    if not isinstance(precision, str) or precision.strip().lower() not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision.strip().lower()


class _EmptyFp32ListFilter(logging.Filter):
    """diffusers 0.42 warns on every ``ModelMixin.to(dtype)`` that modules "should be kept in float32: []" even
    when that list is empty (an ``or []`` where None was meant), five lines for one ``pipe.to(torch.float16)``.
    Only that empty-list case is dropped; a model that does keep modules in fp32 still warns."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_EmptyFp32ListFilter())


def read_class_name(folder) -> str | None:
    """The ``_class_name`` of a pipeline folder's ``model_index.json``, or None where there is none."""
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        return None
    try:
        return json.loads(index.read_text()).get("_class_name")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"{index} is not a valid model_index.json: {e}") from None


def check_pipeline_folder(folder, expected: str) -> None:
    """Raise a clear error when a local folder holds another defusion pipeline than ``expected``."""
    if not Path(str(folder)).is_dir():
        return  # a hub id: diffusers reports what it finds
    name = read_class_name(folder)
    if name is None:
        raise FileNotFoundError(f"{folder} is not a pipeline folder: it has no model_index.json")
    if name != expected:
        hint = f"load it with {name}.from_pretrained" if isinstance(name, str) and name.endswith("Pipeline") else ""
        raise ValueError(f"{folder} holds a {name}, not a {expected}" + (f"; {hint}" if hint else "")
                         + " (diffusers.DiffusionPipeline.from_pretrained picks the class from the folder)")


def strip_local_paths(folder) -> None:
    """Remove machine-local keys (``_name_or_path``) from every JSON config of a saved pipeline folder."""
    for path in [Path(folder) / "model_index.json", *Path(folder).glob("*/*config.json")]:
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        if isinstance(data, dict) and any(k in data for k in LOCAL_KEYS):
            for k in LOCAL_KEYS:
                data.pop(k, None)
            path.write_text(json.dumps(data, indent=2, sort_keys=path.name != "model_index.json") + "\n")


class _OuterBar:
    """What ``progress_bar`` hands out inside ``report_progress``: updates go to the caller's bar."""

    def __init__(self, bar, iterable=None):
        self.bar, self.iterable = bar, iterable

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.bar.update(1)

    def update(self, n: int = 1):
        self.bar.update(n)


class PackagedPipeline(DiffusionPipeline):
    """Base of the defusion pipelines: shipped names, folder checks, portable saving, progress that a caller
    restoring many images can collect on one bar (``report_progress``), and the network's arithmetic
    (``set_precision``)."""

    # whether set_precision("auto") may pick bfloat16: only where it was measured to keep PSNR (a subclass says)
    auto_bf16 = False

    @contextlib.contextmanager
    def report_progress(self, bar):
        """Inside this context, calls count their model evaluations (one per tile per step, what
        ``num_evaluations`` predicts) on ``bar`` (anything with ``update(n)``, such as a tqdm) instead of showing
        a bar of their own."""
        previous = self.__dict__.get("_outer_bar")
        self.__dict__["_outer_bar"] = bar
        try:
            yield self
        finally:
            self.__dict__["_outer_bar"] = previous

    def set_precision(self, precision: str = "auto") -> "PackagedPipeline":
        """The arithmetic of the restoring network (Defusion's denoiser, a restorer) in later calls: ``"fp32"``
        (the weights' own dtype, the default), ``"bf16"`` (bfloat16 autocast: 1.7-1.8 times as fast on a CPU
        with AMX or AVX512-BF16) or ``"auto"`` (bf16 where the execution device computes it natively,
        ``native_bf16``, and the pipeline keeps its quality in bf16, ``auto_bf16``; fp32 elsewhere). Images, the
        sampler state, the scheduler, the instruction tokenizer and the identifier stay in float32. Returns the
        pipeline."""
        precision = check_precision(precision)
        if precision == "bf16" and not self.auto_bf16:
            logger.warning(f"{type(self).__name__} in bfloat16 can change results by dBs (measured on dfpir-small); "
                           "compare with fp32 before relying on it")  # fmt: skip
        self.__dict__["_precision"] = precision
        return self

    @property
    def precision(self) -> str:
        """What ``set_precision`` chose (``"fp32"`` unless it was called)."""
        return self.__dict__.get("_precision", "fp32")

    def autocast(self, device) -> contextlib.AbstractContextManager:
        """The context the restoring network runs in on ``device``: bfloat16 autocast where ``precision`` asks
        for it, else nothing."""
        p = self.precision
        if p == "bf16" and not native_bf16(device) and not self.__dict__.get("_warned_emulated"):
            self.__dict__["_warned_emulated"] = True
            logger.warning(f"{torch.device(device).type} has no native bfloat16: emulated, it is far slower than float32 "
                           "(over 100 times with oneDNN limited to AVX2); set_precision('auto') avoids it")  # fmt: skip
        if p == "bf16" or (p == "auto" and self.auto_bf16 and native_bf16(device)):
            # no cast cache: each weight is used once per forward, and the cached copies added 70-110 MiB to the
            # peak memory of a 1040 px and a 4096 px restore
            return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    def progress_bar(self, iterable=None, total=None):
        bar = self.__dict__.get("_outer_bar")
        if bar is None:
            return super().progress_bar(iterable=iterable, total=total)
        return _OuterBar(bar, iterable)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """A saved pipeline folder, a hub id, or the name of a model shipped in ``defusion.weights``
        (``"defusion-small"``, ``"dfpir-small"``)."""
        if not str(pretrained_model_name_or_path).strip():
            raise ValueError(f"from_pretrained needs a model name ({', '.join(available())}) or a folder, got ''")
        folder = resolve(pretrained_model_name_or_path)
        check_pipeline_folder(folder, cls.__name__)
        return super().from_pretrained(folder, **cls.legacy_components(folder, kwargs))

    @classmethod
    def legacy_components(cls, folder, kwargs: dict) -> dict:
        """``kwargs`` plus components that a folder saved under an older layout holds under other names, loaded
        here (none by default)."""
        return kwargs

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        super().save_pretrained(save_directory, **kwargs)
        strip_local_paths(save_directory)


def register_with_diffusers(*classes: type) -> None:
    """Make ``diffusers.DiffusionPipeline.from_pretrained`` find these classes by their ``_class_name``."""
    for cls in classes:
        if cls.__name__ in dir(diffusers) and diffusers.__dict__.get(cls.__name__) is not cls:
            raise RuntimeError(f"diffusers already has a {cls.__name__}; refusing to shadow it")
        setattr(diffusers, cls.__name__, cls)
