"""The lent-GPU tooling: the data pack, the slim wheel, the campaign's pieces."""

import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "train"))


def test_pack_copies_training_pools_byte_for_byte_and_refuses_test_sets(tmp_path, photo):
    import pack_data

    from defusion.images import save_image

    for i in range(3):
        save_image(photo[i * 30 : i * 30 + 40, :40], tmp_path / "data" / "BSD400" / "gt" / f"{i}.png")
    sizes = [(tmp_path / "data" / "BSD400" / "gt" / f"{i}.png").stat().st_size for i in range(3)]
    budget = (sizes[0] + sizes[1] + 1) / 2**20  # room for two of the three
    summary = pack_data.main(["--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "pack"), "--max-mib", str(budget)])
    assert summary["images"] == 2 and summary["bytes"] == sizes[0] + sizes[1]
    manifest = json.loads((tmp_path / "pack" / "MANIFEST.json").read_text())
    for row in manifest["files"]:
        data = (tmp_path / "pack" / "BSD400" / row["file"]).read_bytes()
        assert data == (tmp_path / "data" / "BSD400" / "gt" / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
    with pytest.raises(SystemExit, match="test sets never train"):
        pack_data.main(["--data-root", str(tmp_path / "data"), "--sets", "CBSD68", "--out", str(tmp_path / "x")])


def test_slim_wheel_drops_unused_subpackages_and_rewrites_record(tmp_path):
    import slim_wheel

    files = {"diffusers/__init__.py": "x = 1\n", "diffusers/pipelines/__init__.py": "", "diffusers/pipelines/pipeline_utils.py": "",
             "diffusers/pipelines/flux/__init__.py": "", "diffusers/pipelines/flux/pipeline_flux.py": "big = 1\n",
             "diffusers/pipelines/kept/__init__.py": "", "diffusers-9.dist-info/METADATA": "Name: diffusers\n",
             "diffusers-9.dist-info/RECORD": "stale\n"}  # fmt: skip
    (tmp_path / "in").mkdir()
    wheel = tmp_path / "in" / "diffusers-9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    (tmp_path / "mods.json").write_text(json.dumps(["diffusers", "diffusers.pipelines.pipeline_utils", "diffusers.pipelines.kept"]))
    slim_wheel.main([str(wheel), "--modules", str(tmp_path / "mods.json"), "--out", str(tmp_path / "out")])
    z = zipfile.ZipFile(tmp_path / "out" / wheel.name)
    names = set(z.namelist())
    assert "diffusers/pipelines/flux/pipeline_flux.py" not in names
    assert {"diffusers/pipelines/pipeline_utils.py", "diffusers/pipelines/kept/__init__.py", "diffusers/__init__.py"} <= names
    record = z.read("diffusers-9.dist-info/RECORD").decode().splitlines()
    assert len(record) == len(names) and all(line.count(",") == 2 for line in record)
    with pytest.raises(SystemExit, match="another folder"):
        slim_wheel.main([str(wheel), "--modules", str(tmp_path / "mods.json"), "--out", str(tmp_path / "in")])


def test_campaign_restore_joins_the_pieces(tmp_path):
    import tarfile

    import device_campaign

    (tmp_path / "pipe" / "unet").mkdir(parents=True)
    payload = np.random.default_rng(0).bytes(3000)
    (tmp_path / "pipe" / "unet" / "w.bin").write_bytes(payload)
    with tarfile.open(tmp_path / "p.tar", "w") as t:
        t.add(tmp_path / "pipe", arcname="pipeline")
    data = (tmp_path / "p.tar").read_bytes()
    (tmp_path / "files").mkdir()
    for i in range(0, len(data), 4096):
        (tmp_path / "files" / f"pipeline.tar.part{i // 4096:02d}").write_bytes(data[i : i + 4096])
    device_campaign.main(["restore", "--from", str(tmp_path / "files"), "--to", str(tmp_path / "runs" / "pipeline")])
    assert (tmp_path / "runs" / "pipeline" / "unet" / "w.bin").read_bytes() == payload
    with pytest.raises(SystemExit, match="no pipeline.tar"):
        device_campaign.main(["restore", "--from", str(tmp_path / "pipe"), "--to", str(tmp_path / "y")])


def test_pack_cuts_a_folder_into_pieces_and_restore_joins_them(tmp_path):
    import device_campaign

    run = tmp_path / "run"
    (run / "checkpoint-500").mkdir(parents=True)
    (run / "pipeline").mkdir()
    big = np.random.default_rng(0).bytes(50_000)
    (run / "checkpoint-500" / "opt.bin").write_bytes(big)
    (run / "pipeline" / "w.bin").write_bytes(big[:20_000])
    (run / "history.jsonl").write_text('{"step": 500}\n')
    out = tmp_path / "out"
    assert device_campaign.pack_folder(run, out, "x", piece=16_384)["pieces"] >= 4  # with the checkpoint
    assert device_campaign.pack_folder(run, out, "x", exclude=("checkpoint-*",), piece=16_384)["pieces"] == 2
    assert len(list(out.glob("x.tar.part*"))) == 2  # the first pack's extra pieces are gone
    device_campaign.main(["restore", "--from", str(out), "--name", "x", "--to", str(tmp_path / "back")])
    assert (tmp_path / "back" / "pipeline" / "w.bin").read_bytes() == big[:20_000]
    assert (tmp_path / "back" / "history.jsonl").is_file() and not (tmp_path / "back" / "checkpoint-500").exists()
    with pytest.raises(SystemExit, match="not a folder"):
        device_campaign.pack_folder(tmp_path / "missing", out, "y")


def test_campaign_summary_skips_validation_rows():
    import device_campaign

    history = [{"step": 25, "loss": 0.5, "lr": 1e-4}, {"step": 50, "val_psnr": 21.0, "val_psnr_input": 18.0},
               {"step": 75, "loss": 0.25, "lr": 1e-4}, {"step": 80, "loss": 0.125, "lr": 1e-4}]  # fmt: skip
    assert device_campaign.history_summary(history) == {"first_loss": 0.5, "last_losses": [0.5, 0.25, 0.125],
                                                        "val_psnr": 21.0, "val_psnr_input": 18.0}  # fmt: skip
    assert device_campaign.history_summary([]) == {"first_loss": None, "last_losses": [], "val_psnr": None,
                                                   "val_psnr_input": None}  # fmt: skip
