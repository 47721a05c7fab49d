"""Would an exported denoiser restore faster on a CPU? One U-Net + bridge + adapter evaluation of a shipped
model in PyTorch (inference mode, channels-last as the pipeline runs it), ONNX Runtime and OpenVINO, same inputs.

    python benchmarks/export_speed.py --model default --size 512 --threads 2 [--precision bf16] [--compile]

ONNX Runtime (``pip install onnxruntime``) and OpenVINO (``pip install openvino``) are optional: a runtime that is
not installed is reported as such. Prints seconds per evaluation (median of ``--repeats`` after a warm-up), the
speed-up over PyTorch and the largest output difference; ``--json`` also writes them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from defusion import DefusionPipeline
from defusion.weights import resolve


class Forward(torch.nn.Module):
    """The pipeline's one denoiser call with positional tensor inputs (what exporters trace)."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, sample, timestep, lq, tokens):
        return self.denoiser(sample, timestep, lq, tokens)


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--size", type=int, default=512, help="square input side (a multiple of 16)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: PyTorch under bfloat16 autocast (the pipelines' set_precision) and OpenVINO with a "
                        "bfloat16 inference hint; ONNX Runtime stays float32")
    p.add_argument("--compile", action="store_true", help="also torch.compile the PyTorch model (minutes to compile)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.size <= 0 or args.size % 16:
        p.error(f"--size must be a positive multiple of 16, got {args.size}")
    torch.set_num_threads(args.threads)
    pipe = DefusionPipeline.from_pretrained(resolve(args.model))
    tok = pipe.degradation_tokenizer
    model = Forward(pipe.denoiser).eval()
    g = torch.Generator().manual_seed(0)
    s = args.size
    inputs = (torch.randn(1, 3, s, s, generator=g), torch.tensor([999]), torch.rand(1, 3, s, s, generator=g) * 2 - 1,
              torch.randn(1, tok.num_tokens, tok.token_dim, generator=g))  # fmt: skip
    feed = [x.numpy() for x in inputs]
    rows = []
    with torch.inference_mode():
        ref = model(*inputs).numpy()
        cl = [x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in inputs]
        bf16 = args.precision == "bf16"

        def run_torch():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(*cl).float()

        rows.append({"runtime": f"PyTorch {torch.__version__} {args.precision}", "seconds": timed(run_torch, args.repeats),
                     "max_abs_diff": float((run_torch() - torch.from_numpy(ref)).abs().max())})  # fmt: skip
        if args.compile:
            compiled_model = torch.compile(model)

            def run_compiled():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    return compiled_model(*cl).float()

            start = time.perf_counter()
            run_compiled()
            rows.append({"runtime": f"PyTorch compiled {args.precision} (compiling took {time.perf_counter() - start:.0f} s)",
                         "seconds": timed(run_compiled, args.repeats),
                         "max_abs_diff": float((run_compiled() - torch.from_numpy(ref)).abs().max())})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if importlib.util.find_spec("onnxruntime") is None:
            rows.append({"runtime": "ONNX Runtime", "skipped": "not installed (pip install onnxruntime)"})
        else:
            import onnxruntime as ort

            path = str(Path(tmp) / "denoiser.onnx")
            torch.onnx.export(model, inputs, path, input_names=["sample", "timestep", "lq", "tokens"], opset_version=17,
                              dynamo=False)  # fmt: skip
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            names = [i.name for i in sess.get_inputs()]
            run = lambda: sess.run(None, dict(zip(names, feed)))[0]  # noqa: E731
            rows.append({"runtime": f"ONNX Runtime {ort.__version__}", "seconds": timed(run, args.repeats),
                         "max_abs_diff": float(np.abs(run() - ref).max())})  # fmt: skip
    if importlib.util.find_spec("openvino") is None:
        rows.append({"runtime": "OpenVINO", "skipped": "not installed (pip install openvino)"})
    else:
        import openvino as ov

        hint = {"fp32": "f32", "bf16": "bf16"}[args.precision]
        compiled = ov.Core().compile_model(ov.convert_model(model, example_input=inputs), "CPU",
                                           {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY",
                                            "INFERENCE_PRECISION_HINT": hint})  # fmt: skip
        run = lambda: compiled(feed)[0]  # noqa: E731
        rows.append({"runtime": f"OpenVINO {ov.__version__.split('-')[0]} {args.precision}", "seconds": timed(run, args.repeats),
                     "max_abs_diff": float(np.abs(run() - ref).max())})  # fmt: skip
    base = rows[0]["seconds"]
    print(f"\n{args.model}: one denoiser evaluation at {s} x {s}, {args.threads} threads, median of {args.repeats}; "
          f"differences from PyTorch float32\n")
    print("| runtime | seconds | speed-up | max abs difference |\n|---|---:|---:|---:|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['runtime']} | {r['skipped']} | | |")
        else:
            r["speedup"] = base / r["seconds"]
            print(f"| {r['runtime']} | {r['seconds']:.3f} | {r['speedup']:.2f} x | {r['max_abs_diff']:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "size": s, "threads": args.threads,
                                               "precision": args.precision, "rows": rows}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
