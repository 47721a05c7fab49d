"""Classify every case of the bad-input corpus (tests/test_bad_inputs.py) by what happens: a clear error, a crash,
an error naming something else, silent NaN, silently accepted, handled. Runs against whichever ``defusion`` is first
on the path, so an old checkout can be compared with this one:

    python benchmarks/bad_inputs.py                                   # this checkout
    git worktree add /tmp/old REV && PYTHONPATH=/tmp/old python benchmarks/bad_inputs.py
"""
import collections, contextlib, io, re, sys, tempfile, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import numpy as np, torch
import defusion
print("defusion from", defusion.__file__, file=sys.stderr)
import test_bad_inputs as T
from defusion import DefusionPipeline, RestorerPipeline
from defusion.cli import main

class F:  # stand-in for tmp_path_factory
    def mktemp(self, name):
        return Path(tempfile.mkdtemp(prefix=name))

torch.manual_seed(0)
pipe = DefusionPipeline.from_preset("tiny"); pipe.set_progress_bar_config(disable=True)
rest = RestorerPipeline.from_preset("promptir", "tiny"); rest.set_progress_bar_config(disable=True)
counts = collections.Counter()

def classify(group, call, outcome, expect):
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            out = call()
    except T.ERRORS as e:
        if outcome == "error":
            res = "clear error" if re.search(expect, str(e)) else "error naming something else"
        else:
            res = "valid input refused"
    except Exception as e:
        res = f"crash ({type(e).__name__})"
    else:
        arr = np.asarray(out[0] if isinstance(out, (list, np.ndarray)) else out)
        if not np.isfinite(arr).all():
            res = "silent NaN"
        elif outcome == "error":
            res = "silently accepted"
        else:
            res = "handled" if arr.shape[:2] == expect else "silently wrong shape"
    counts[(group, res)] += 1

for name, make, outcome, expect in T.IMAGE_CASES:
    for which, p in (("defusion", pipe), ("restorer", rest)):
        kw = dict(output_type="np") | ({"num_inference_steps": 1} if which == "defusion" else {"degradation": "noise"})
        classify("images", lambda: p(make(F()), **kw).images, outcome, expect)
for kwargs, outcome, expect in T.ARGUMENT_CASES:
    kw = {"num_inference_steps": 1, **kwargs} if "num_inference_steps" not in kwargs else kwargs
    classify("arguments", lambda: pipe(T.img(), output_type="np", **kw).images, outcome, expect)
tmp = Path(tempfile.mkdtemp())
for argv in T._cli_cases(tmp):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        lines = err.getvalue().strip().splitlines()
        res = "clear error" if code != 0 and lines and lines[-1].startswith(f"defusion {argv[0]}:") and "Traceback" not in err.getvalue() else f"exit {code}"
    except BaseException as e:
        res = f"traceback ({type(e).__name__})"
    counts[("cli", res)] += 1
for group in ("images", "arguments", "cli"):
    print(group, dict(sorted((r, n) for (g, r), n in counts.items() if g == group)))
