#!/usr/bin/env python
"""A slim diffusers wheel for a lent GPU machine, where everything that travels counts against 64 MiB.

    python train/slim_wheel.py .whl/diffusers-0.42.1-py3-none-any.whl --out .whl/

diffusers' wheel (6.2 MB) is mostly the code of its own pipelines and transformer models; defusion uses its
blocks, schedulers, ``ModelMixin`` / ``DiffusionPipeline`` and training utilities. This drops the folders under
``diffusers/pipelines``, ``diffusers/modular_pipelines`` and ``diffusers/models/{transformers,controlnets}`` that
no defusion code imports (``--keep`` names more), rewrites RECORD with the kept files' hashes, and writes
``<name>-<version>-py3-none-any.whl`` (same name: ``pip install`` takes it as diffusers). The module list comes from
running the package (``--modules``, a JSON list of module names as ``sys.modules`` had them after a restore and a
short training); a module that is imported later and was dropped raises ImportError naming it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import zipfile
from pathlib import Path

PRUNABLE = ("diffusers/pipelines/", "diffusers/modular_pipelines/", "diffusers/models/transformers/",
            "diffusers/models/controlnets/")  # fmt: skip


def used_folders(modules: list[str]) -> set[str]:
    """'diffusers/pipelines/flux/' for every imported module inside a prunable subfolder."""
    out = set()
    for m in modules:
        path = m.replace(".", "/") + "/"
        for root in PRUNABLE:
            if path.startswith(root) and path.count("/") > root.count("/"):
                out.add(root + path[len(root) :].split("/")[0] + "/")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wheel")
    p.add_argument("--modules", required=True, help="JSON list of the diffusers modules to keep")
    p.add_argument("--keep", nargs="*", default=[], help="more folders to keep, e.g. diffusers/pipelines/flux/")
    p.add_argument("--out", default=".whl")
    args = p.parse_args(argv)
    keep = used_folders(json.loads(Path(args.modules).read_text())) | set(args.keep)
    src = zipfile.ZipFile(args.wheel)
    out_path = Path(args.out) / Path(args.wheel).name
    if out_path.resolve() == Path(args.wheel).resolve():
        raise SystemExit("--out must be another folder than the wheel's")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
    rows, dropped = [], 0
    with zipfile.ZipFile(out_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in src.infolist():
            name = info.filename
            sub = next((r for r in PRUNABLE if name.startswith(r) and name.count("/") > r.count("/")), None)
            if sub is not None and not any(name.startswith(k) for k in keep):
                dropped += 1
                continue
            if name == record_name:
                continue
            data = src.read(name)
            dst.writestr(info, data, compresslevel=9)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append(f"{name},sha256={digest},{len(data)}")
        rows.append(f"{record_name},,")
        dst.writestr(record_name, "\n".join(rows) + "\n")
    kept = sorted({n.rsplit("/", 1)[0] + "/" for n in zipfile.ZipFile(out_path).namelist()
                   if any(n.startswith(r) and n.count("/") > r.count("/") for r in PRUNABLE)})  # fmt: skip
    print(json.dumps({"wheel": str(out_path), "bytes": out_path.stat().st_size, "files_dropped": dropped, "kept_subfolders": kept}))


if __name__ == "__main__":
    main()
