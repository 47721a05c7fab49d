"""A generated corpus of bad (and odd but valid) inputs through the API and the CLI. Each case states its class
of outcome: ``"error"`` (a ValueError / TypeError / FileNotFoundError whose message names the problem, raised
before any work) or ``"ok"`` (a finite image of the right size). Nothing may crash elsewhere, hang or return NaN."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from defusion import DefusionPipeline, RestorerPipeline
from defusion import degradations as D
from defusion.cli import main
from defusion.images import save_image

ERRORS = (ValueError, TypeError, FileNotFoundError)


@pytest.fixture(scope="module")
def pipe(tiny_defusion):
    return tiny_defusion


@pytest.fixture(scope="module")
def restorer():
    torch.manual_seed(0)
    p = RestorerPipeline.from_preset("promptir", "tiny")
    p.set_progress_bar_config(disable=True)
    return p


def img(h=16, w=16, c=3, seed=0):
    return np.random.default_rng(seed).random((h, w, c)).astype(np.float32)


def truncated_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("trunc") / "t.png"
    save_image(img(64, 64), path)
    path.write_bytes(path.read_bytes()[:200])
    return Image.open(path)  # opened lazily: decoding fails later


def huge_header():
    return Image.new("1", (9000, 9000))  # 81 MP, 10 MB in mode "1": refused before conversion


IMAGE_CASES = [
    ("nan", lambda t: np.full((16, 16, 3), np.nan, np.float32), "error", "NaN"),
    ("inf", lambda t: np.full((16, 16, 3), np.inf, np.float32), "error", "finite|inf|range"),
    ("above 1", lambda t: img() * 3, "error", "range"),
    ("empty rows", lambda t: np.zeros((0, 16, 3), np.float32), "error", "empty"),
    ("empty cols", lambda t: np.zeros((16, 0, 3), np.uint8), "error", "empty"),
    ("2 channels", lambda t: img(c=2), "error", "channels"),
    ("5 channels", lambda t: img(c=5), "error", "channels"),
    ("uint32", lambda t: np.zeros((16, 16, 3), np.uint32), "error", "dtype"),
    ("string", lambda t: "not an image", "error", "PIL image|numpy|tensor"),
    ("None", lambda t: None, "error", "PIL image|numpy|tensor"),
    ("dict", lambda t: {"image": 1}, "error", "PIL image|numpy|tensor"),
    ("empty list", lambda t: [], "error", "no images"),
    ("list with None", lambda t: [img(), None], "error", "PIL image|numpy|tensor"),
    ("5-D array", lambda t: np.zeros((1, 1, 16, 16, 3), np.float32), "error", "shape|channels|dimension"),
    ("truncated file", truncated_png, "error", "decode|truncated|image"),
    ("huge header", lambda t: huge_header(), "error", "MP limit"),
    ("thin 1 x 40", lambda t: img(1, 40), "ok", (1, 40)),
    ("thin 40 x 1", lambda t: img(40, 1), "ok", (40, 1)),
    ("3 x 3", lambda t: img(3, 3), "ok", (3, 3)),
    ("grey 2-D", lambda t: img(12, 20)[..., 0], "ok", (12, 20)),
    ("grey 1 channel", lambda t: img(12, 20, 1), "ok", (12, 20)),
    ("RGBA", lambda t: img(12, 20, 4), "ok", (12, 20)),
    ("uint8", lambda t: (img() * 255).astype(np.uint8), "ok", (16, 16)),
    ("uint16", lambda t: (img() * 65535).astype(np.uint16), "ok", (16, 16)),
    ("bool", lambda t: img()[..., 0] > 0.5, "ok", (16, 16)),
    ("CHW tensor, W = 3", lambda t: torch.rand(3, 10, 3), "ok", (10, 3)),
    ("CHW tensor, W = 4", lambda t: torch.rand(3, 12, 4), "ok", (12, 4)),
    ("BCHW tensor", lambda t: torch.rand(1, 3, 12, 20), "ok", (12, 20)),
    ("PIL RGB", lambda t: Image.fromarray((img() * 255).astype(np.uint8)), "ok", (16, 16)),
    ("PIL L", lambda t: Image.fromarray((img()[..., 0] * 255).astype(np.uint8)), "ok", (16, 16)),
    ("PIL P", lambda t: Image.fromarray((img() * 255).astype(np.uint8)).convert("P"), "ok", (16, 16)),
]


@pytest.mark.parametrize("name,make,outcome,expect", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
@pytest.mark.parametrize("which", ["defusion", "restorer"])
def test_images(pipe, restorer, tmp_path_factory, name, make, outcome, expect, which):
    p = pipe if which == "defusion" else restorer
    kwargs = dict(output_type="np") | ({"num_inference_steps": 1} if which == "defusion" else {"degradation": "noise"})
    check(lambda: p(make(tmp_path_factory), **kwargs).images, outcome, expect)


def check(call, outcome, expect):
    if outcome == "error":
        with pytest.raises(ERRORS, match=expect):
            call()
        return
    out = call()
    arr = out[0] if isinstance(out, (list, np.ndarray)) else out
    arr = np.asarray(arr)
    assert arr.shape[:2] == expect and np.isfinite(arr).all() and 0 <= arr.min() and arr.max() <= 1


ARGUMENT_CASES = [
    # (keyword arguments, outcome, what the message names)
    *[(dict(instruction=v), "error", "instruction") for v in (123, 3.5, True, {}, object(), b"rain")],
    *[(dict(instruction=v), "error", "valid names|empty") for v in ("smog", "rain+", "+noise", "rain++noise", "nose25")],
    *[(dict(instruction=v), "ok", (16, 16)) for v in (None, "none", "", "auto", "rain", "noise25+jpeg10", D.Rain(),
                                                       D.parse("haze+noise"), (D.Rain(), D.GaussianNoise(sigma=10)))],
    *[(dict(num_inference_steps=v), "error", "num_inference_steps") for v in (0, -1, 1001, 2.5, "4", True, 10**9)],
    *[(dict(num_inference_steps=v), "ok", (16, 16)) for v in (1, 2, np.int64(3))],
    *[(dict(self_ensemble=v), "error", "self_ensemble") for v in (3, 0, 64, 2.0, "8", -1)],
    *[(dict(self_ensemble=v), "ok", (16, 16)) for v in (True, False, 1, 2, 4)],
    *[(dict(instruction_scale=v), "error", "instruction_scale")
      for v in (math.nan, math.inf, -math.inf, "high", True, None.__class__, torch.ones(3))],
    *[(dict(instruction_scale=v, instruction="rain"), "ok", (16, 16)) for v in (0, 0.5, 2, torch.tensor(0.7))],
    *[(dict(eta=v), "error", "eta") for v in (1.0, 1.5, -0.1, math.nan, "0.5", True, None)],
    *[(dict(eta=v), "ok", (16, 16)) for v in (0, 0.5, 0.99)],
    *[(dict(tile_size=v), "error", "tile_size") for v in (0, -16, 15, 31, 32.0, True, "512")],
    *[(dict(tile_size=v, tile_overlap=4), "ok", (16, 16)) for v in (None, 8, 16, 512)],
    *[(dict(tile_overlap=v), "error", "tile_overlap") for v in (-1, 2.5, "32", None, 512, 1000)],
    *[(dict(instruction_seed=v), "error", "instruction_seed") for v in (-1, None, 2**70, 1.5, "0", True)],
    *[(dict(instruction_seed=v), "ok", (16, 16)) for v in (0, 7, 2**40)],
    *[(dict(generator=v), "error", "generator") for v in ("cuda", 5, [torch.Generator()] * 2, torch.device("cpu"))],
    *[(dict(output_type=v), "error", "output_type") for v in ("jpg", "PIL", None, 3)],
    *[(dict(prompt_embeds=v), "error", "prompt_embeds") for v in (torch.zeros(1, 2, 5), torch.zeros(2, 8))],
    *[(dict(prompt_embeds=torch.full((1, 1, 8), v)), "error", "not finite") for v in (math.nan, math.inf)],
    (dict(prompt="remove rain"), "error", "text_encoder"),
    (dict(prompt="remove rain", prompt_embeds=torch.zeros(1, 1, 8)), "error", "text_encoder|prompt"),
    *[(dict(callback_on_step_end_tensor_inputs=v, callback_on_step_end=lambda *a: {}), "error", "tensor_inputs")
      for v in (["prompt_embeds"], ["noise"])],
]


@pytest.mark.parametrize("kwargs,outcome,expect", ARGUMENT_CASES, ids=[f"arg{i}" for i in range(len(ARGUMENT_CASES))])
def test_arguments(pipe, kwargs, outcome, expect):
    kwargs = {"num_inference_steps": 1, **kwargs} if "num_inference_steps" not in kwargs else kwargs
    check(lambda: pipe(img(), output_type="np", **kwargs).images, outcome, expect)


def test_long_calls_warn(pipe, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        pipe(img(8, 8), output_type="np", num_inference_steps=20, self_ensemble=4)
    assert any("80 U-Net evaluations" in r.getMessage() for r in caplog.records)


def test_a_bad_call_does_not_change_the_next(pipe):
    def call(**kwargs):
        return pipe(img(), output_type="np", num_inference_steps=1, instruction="rain",
                    generator=torch.Generator().manual_seed(0), **kwargs).images  # fmt: skip

    before = call()
    for kwargs in (dict(instruction_scale=math.nan), dict(eta=1.0), dict(instruction_scale=0), dict(tile_size=-1)):
        try:
            call(**kwargs)
        except ValueError:
            pass
    np.testing.assert_array_equal(call(), before)


def _cli_cases(tmp):
    good = save_image(img(24, 24), tmp / "in.png")
    (tmp / "text.png").write_text("not a png")
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "dir").mkdir()
    torch.manual_seed(0)
    DefusionPipeline.from_preset("tiny").save_pretrained(tmp / "model")
    (tmp / "noindex").mkdir()
    (tmp / "badindex").mkdir()
    (tmp / "badindex" / "model_index.json").write_text("{not json")
    cases = [
        ["restore", str(tmp / "missing.png"), "-o", str(tmp / "o.png")],
        ["restore", str(tmp / "text.png"), "-o", str(tmp / "o.png")],
        ["restore", str(tmp / "empty.png"), "-o", str(tmp / "o.png")],
        ["restore", str(good), "-o", str(tmp / "o.gif"), "--model", str(tmp / "model")],
        ["restore", str(good), "-o", str(tmp / "o.png"), "--model", str(tmp / "model"), "--tile-overlap", "600"],
        ["restore", str(good), "-o", str(tmp / "o.png"), "--model", str(tmp / "noindex")],
        ["restore", str(good), "-o", str(tmp / "o.png"), "--model", str(tmp / "badindex")],
        ["restore", str(good), "-o", str(tmp / "o.png"), "--model", "defusion-huge"],
        ["restore", str(good), "-o", str(tmp / "o.png"), "--model", str(tmp / "model"), "--instruction", "smog"],
        ["restore", str(good), "-o", str(tmp / "o.png"), "--model", str(tmp / "model"), "--seed", str(2**70)],
        ["restore", str(good), "-o", str(tmp / "o.png"), "--model", str(tmp / "model"), "--steps", "0"],
        ["restore", str(good), "-o", str(tmp / "o.png"), "--model", str(tmp / "model"), "--tile", "-16"],
        ["restore", str(good), "-o", str(tmp / "o.png"), "--model", str(tmp / "model"), "--self-ensemble", "3"],
        ["instruct", "rain", "-o", str(tmp / "i.png"), "--size", "100000"],
        ["instruct", "rain", "-o", str(tmp / "i.png"), "--size", "0"],
        ["instruct", "smog", "-o", str(tmp / "i.png")],
        ["instruct", "rain", "-o", str(tmp / "dir")],
        ["degrade", str(good), "smog", "-o", str(tmp / "d.png")],
        ["degrade", str(tmp / "missing.png"), "rain", "-o", str(tmp / "d.png")],
        ["degrade", str(good), "rain", "-o", str(tmp / "dir")],
        ["eval", "--method", "nope", "--tasks", "Set:noise25", "--data-root", str(tmp)],
        ["eval", "--method", "identity", "--tasks", "Set:smog", "--data-root", str(tmp)],
        ["demo", "-o", str(tmp / "demo"), "--model", "defusion-huge"],
    ]
    return cases


def test_cli_failures_are_one_line(tmp_path, capsys):
    for argv in _cli_cases(tmp_path):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0, argv
        assert err and err[-1].startswith(f"defusion {argv[0]}:") and not any("Traceback" in e for e in err), (argv, err)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "i.png").exists()  # nothing half-written


def test_loading_failures_name_the_problem(tmp_path):
    (tmp_path / "noindex").mkdir()
    for arg, msg in (("", "needs a model name"), ("defusion-huge", "not shipped"), (str(tmp_path / "noindex"), "model_index"),
                     ("dfpir-small", "holds a RestorerPipeline")):  # fmt: skip
        with pytest.raises(ERRORS, match=msg):
            DefusionPipeline.from_pretrained(arg)
    with pytest.raises(ERRORS, match="holds a DefusionPipeline"):
        RestorerPipeline.from_pretrained("defusion-small")
