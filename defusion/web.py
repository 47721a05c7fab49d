"""``defusion serve``: a web page over the same pipelines, offline (Gradio, the optional ``web`` extra).

    pip install -e ".[web]"
    defusion serve [--host 127.0.0.1] [--port 7860] [--model NAME_OR_FOLDER] [--max-megapixels 12]

The page restores an uploaded photo (or a bundled example) blind or with a composed instruction, with any shipped
model or saved pipeline folder, and shows a before/after slider, what blind mode detected, the visual instruction,
the time taken, PSNR/SSIM against an optional clean reference, and a full-resolution PNG to download. The same
restore is a named API endpoint, ``/restore`` (image file, instruction string such as ``"auto"`` or
``"rain+noise25"``) -> restored PNG, for ``gradio_client``. Nothing is fetched from outside: no analytics, no
share link, no web fonts, no server-side rendering.

The functions below hold the logic and raise ``ValueError`` with a message for the user; the Gradio handlers only
turn those into ``gr.Error``.
"""


import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import degradations as D
from .images import load_image, save_image
from .metrics import psnr, ssim

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

MODES = ("auto", "instruction")
ENSEMBLE_CHOICES = (1, 2, 4, 8)
MAX_STEPS = 8


@dataclass
class Result:
    image: np.ndarray  # float HWC in [0, 1]
    instruction: str  # what the model was told ("none", "rain+noise(sigma=25)", ...)
    detected: dict[str, float] = field(default_factory=dict)  # blind mode: kind -> probability
    instruction_image: np.ndarray | None = None  # the visual instruction the model saw (Defusion)
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)  # psnr / ssim against a reference


def read_upload(path, max_megapixels: float) -> np.ndarray:
    """An uploaded file as a float RGB image; the size is checked from the header before the image is decoded."""
    if path is None:
        raise ValueError("upload an image first")
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:
        raise ValueError(f"{path.name} is not an image this page can read (PNG, JPEG, WebP, TIFF, BMP)") from None
    if w * h > max_megapixels * 1e6:
        raise ValueError(f"the image is {w} x {h} ({w * h / 1e6:.1f} MP); this page takes up to {max_megapixels:g} MP")
    return load_image(path)


def instruction_from_controls(mode: str, kinds=(), strength: float = 0.5, spec: str = "", seed: int = 0):
    """The pipeline's ``instruction`` from the page's controls: ``"auto"``, an exact spec string, or the picked
    kinds at one strength (severity in [0, 1])."""
    if mode not in MODES:
        raise ValueError(f"unsupported mode {mode!r}; choose one of {MODES}")
    if mode == "auto":
        return "auto"
    if spec and spec.strip():
        D.parse(spec.strip())  # unknown names raise ValueError naming the valid ones
        return spec.strip()
    if not kinds:
        raise ValueError("pick at least one degradation, or type one such as rain+noise25, or use mode auto")
    rng = np.random.default_rng(seed)
    return D.Compose([D.get(k).from_severity(float(strength), rng) for k in kinds])


class ModelCache:
    """Pipelines by name or folder, loaded once (float32 weights, ``set_precision("auto")`` as ``defusion restore``;
    progress bars on for the page), one restore at a time."""

    def __init__(self):
        self._pipes: dict[str, object] = {}
        self.lock = threading.Lock()

    def get(self, name: str):
        if name not in self._pipes:
            import torch

            from .pipelines import pipeline_class
            from .weights import resolve

            folder = resolve(name)
            self._pipes[name] = pipeline_class(folder).from_pretrained(folder, dtype=torch.float32).set_precision("auto")
        return self._pipes[name]

    def defaults(self, name: str) -> tuple[int, int]:
        """(steps, self-ensemble) a call without them runs (a RestorerPipeline: one pass)."""
        pipe = self.get(name)
        if not hasattr(pipe, "denoiser"):
            return 1, 1
        return int(pipe.config.default_steps), int(pipe.config.default_self_ensemble)


def restore(cache: ModelCache, model: str, image: np.ndarray, instruction, steps: int | None = None,
            self_ensemble: int | None = None, seed: int = 0, reference: np.ndarray | None = None,
            tile_size: int = 512) -> Result:  # fmt: skip
    """Restore one image with a cached pipeline; both pipeline kinds, the same arguments."""
    import torch

    if steps is not None and not 1 <= int(steps) <= MAX_STEPS:
        raise ValueError(f"steps must be 1 to {MAX_STEPS}, got {steps}")
    if self_ensemble is not None and int(self_ensemble) not in ENSEMBLE_CHOICES:
        raise ValueError(f"self-ensemble must be one of {ENSEMBLE_CHOICES}, got {self_ensemble}")
    if reference is not None and reference.shape != image.shape:
        raise ValueError(f"the reference is {reference.shape[1]} x {reference.shape[0]}, the image "
                         f"{image.shape[1]} x {image.shape[0]}: they must be the same size")  # fmt: skip
    with cache.lock:
        pipe = cache.get(model)
        t0 = time.perf_counter()
        if hasattr(pipe, "denoiser"):  # Defusion
            out = pipe(image, instruction=instruction, num_inference_steps=None if steps is None else int(steps),
                       self_ensemble=None if self_ensemble is None else int(self_ensemble), output_type="np",
                       generator=torch.Generator().manual_seed(int(seed)), instruction_seed=int(seed),
                       tile_size=tile_size)  # fmt: skip
            label, detected = out.instructions[0], out.detected[0] if out.detected else None
            shown = pipe.make_instruction(instruction, seed=int(seed)) if not isinstance(instruction, str) or instruction != "auto" else None
            if detected:
                shown = pipe.identify(image, seed=int(seed))[1]
        else:  # a regression restorer: told the degradation names
            deg = instruction if instruction is None or isinstance(instruction, str) else "+".join(s.name for s in instruction.steps)
            out = pipe(image, degradation=deg, output_type="np", tile_size=tile_size)
            label, shown = out.degradations[0], None
            detected = [(k, p, s) for k, p, s in pipe.identifier.identify(image)] if deg == "auto" and pipe.identifier else None
        seconds = time.perf_counter() - t0
    result = Result(image=out.images[0], instruction=label, seconds=seconds,
                    detected={k: float(p) for k, p, _ in detected} if detected else {},
                    instruction_image=shown.grid() if shown is not None else None)  # fmt: skip
    if reference is not None:
        result.metrics = {"psnr": psnr(result.image, reference, crop_multiple=None),
                          "ssim": ssim(result.image, reference, crop_multiple=None),
                          "input_psnr": psnr(image, reference, crop_multiple=None)}  # fmt: skip
    return result


def summary(result: Result, image: np.ndarray) -> str:
    """The page's text under the result: time, what the model was told, metrics."""
    h, w = image.shape[:2]
    lines = [f"**{result.seconds:.1f} s** for {w} x {h} ({result.seconds / (w * h / 1e6):.1f} s per megapixel); "
             f"instruction: `{result.instruction}`"]  # fmt: skip
    if result.metrics:
        m = result.metrics
        lines.append(f"PSNR **{m['psnr']:.2f} dB** (input {m['input_psnr']:.2f} dB), SSIM {m['ssim']:.4f}")
    return "\n\n".join(lines)


def build_app(model: str = "defusion-small", max_megapixels: float = 12.0, cache: ModelCache | None = None):
    """The Gradio Blocks of the page (call ``.launch()``; ``serve`` does)."""
    import gradio as gr

    from .assets import sample_path
    from .weights import available

    cache = cache or ModelCache()
    models = list(dict.fromkeys([model, *available()]))
    steps0, ens0 = cache.defaults(model)
    outdir = Path(tempfile.mkdtemp(prefix="defusion-serve-"))

    def run(path, mode, kinds, strength, spec, name, steps, ensemble, seed, ref_path, progress=gr.Progress(track_tqdm=True)):
        try:
            image = read_upload(path, max_megapixels)
            reference = read_upload(ref_path, max_megapixels) if ref_path else None
            inst = instruction_from_controls(mode, kinds or (), strength, spec or "", int(seed))
            res = restore(cache, name, image, inst, steps, ensemble, int(seed), reference)
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from None
        png = save_image(res.image, outdir / f"restored-{time.time_ns()}.png")
        return ((image, res.image), res.detected or None, res.instruction_image, summary(res, image), str(png))

    def api_restore(image: gr.FileData, instruction: str = "auto") -> gr.FileData:
        """Restore an image file; ``instruction``: "auto" (blind), "none", or names such as "rain+noise25"."""
        try:
            img = read_upload(image["path"] if isinstance(image, dict) else getattr(image, "path", image), max_megapixels)
            inst = instruction.strip() if instruction and instruction.strip().lower() not in ("none", "") else None
            if inst not in (None, "auto"):
                D.parse(inst)
            res = restore(cache, model, img, inst)
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from None
        return gr.FileData(path=str(save_image(res.image, outdir / f"api-{time.time_ns()}.png")))

    def model_defaults(name):
        try:
            return cache.defaults(name)
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from None

    with gr.Blocks(title="defusion: restore a photo", analytics_enabled=False) as demo:
        gr.Markdown("# defusion\nRestore a photo degraded by noise, rain, haze, snow, blur, low light, JPEG or a "
                    "mixture: blind (`auto`), or tell the model what to remove.")  # fmt: skip
        with gr.Row():
            with gr.Column():
                inp = gr.Image(type="filepath", label="degraded photo", elem_id="input-image")
                gr.Examples([[str(sample_path("degraded"))]], inputs=[inp], label="bundled example (rain + noise)")
                mode = gr.Radio(list(MODES), value="auto", label="mode", elem_id="mode")
                with gr.Group():
                    kinds = gr.CheckboxGroup(D.names(), label="remove (mode: instruction)", elem_id="kinds")
                    strength = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label="strength of the picked degradations")
                    spec = gr.Textbox(label="or an exact instruction, e.g. rain+noise25", elem_id="spec")
                with gr.Accordion("model and sampler", open=False):
                    name = gr.Dropdown(models, value=model, label="model")
                    steps = gr.Slider(1, MAX_STEPS, value=steps0, step=1, label="DDIM steps (Defusion)")
                    ensemble = gr.Dropdown(list(ENSEMBLE_CHOICES), value=ens0, label="self-ensemble views (Defusion)")
                    seed = gr.Number(0, precision=0, label="seed")
                ref = gr.Image(type="filepath", label="clean reference (optional: PSNR / SSIM)", elem_id="reference")
                button = gr.Button("Restore", variant="primary", elem_id="restore-button")
            with gr.Column():
                slider = gr.ImageSlider(label="before | after", type="numpy", elem_id="result")
                info = gr.Markdown(elem_id="summary")
                detected = gr.Label(label="blind mode detected", elem_id="detected")
                shown = gr.Image(label="the visual instruction (null ground | instruction | difference)", interactive=False)
                download = gr.File(label="full-resolution PNG", elem_id="download")
        name.change(model_defaults, inputs=name, outputs=[steps, ensemble], api_visibility="private")
        button.click(run, inputs=[inp, mode, kinds, strength, spec, name, steps, ensemble, seed, ref],
                     outputs=[slider, detected, shown, info, download], api_name="restore_page")  # fmt: skip
        gr.api(api_restore, api_name="restore")
    demo.queue(default_concurrency_limit=1, max_size=32)  # concurrent users wait their turn
    return demo


def serve(host: str = "127.0.0.1", port: int = 7860, model: str = "defusion-small", max_megapixels: float = 12.0,
          quiet: bool = False) -> None:  # fmt: skip
    """Start the page and block."""
    import gradio as gr

    demo = build_app(model, max_megapixels)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=host, server_port=port, share=False, ssr_mode=False, quiet=quiet, theme=theme,
                footer_links=["api"], pwa=False, mcp_server=False)  # fmt: skip
