"""Perceive-IR stage 1: triplets with the 2-fold medium restorer, and quality prompt training with resume."""

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
import make_quality_triplets  # noqa: E402
import train_quality_prompts  # noqa: E402


@pytest.fixture(scope="module")
def triplets(tmp_path_factory, photo):
    from defusion.images import save_image

    clean = tmp_path_factory.mktemp("clean")
    for i in range(6):
        save_image(photo[i * 10 : i * 10 + 40, i * 20 : i * 20 + 48], clean / f"{i}.png")
    out = tmp_path_factory.mktemp("triplets")
    make_quality_triplets.main(make_quality_triplets.parse_args(
        ["--clean_dirs", str(clean), "--kinds", "noise,haze", "--out", str(out), "--preset", "tiny", "--steps", "2",
         "--resolution", "32", "--cpu"]))  # fmt: skip
    return out


def test_triplets_are_complete_and_cross_validated(triplets):
    manifest = json.loads((triplets / "manifest.json").read_text())
    pairs = manifest["pairs"]
    assert len(pairs) == 12 and {p["fold"] for p in pairs} == {0, 1}
    for p in pairs:
        for tier in ("low", "medium", "high"):
            assert (triplets / p["task"] / tier / f"{p['stem']}.png").is_file()
        assert p["medium_by_fold_model"] != p["fold"]  # never rendered by the model trained on it
    # folds and specs follow the file name, not the folder: the same images split the same way on any machine
    assert all(make_quality_triplets.fold_of(t, Path("/a") / f) == make_quality_triplets.fold_of(t, Path("/b/c") / f)
               for t in ("noise", "haze") for f in ("0.png", "x.jpg"))  # fmt: skip
    sigmas = [p["spec"]["sigma"] for p in pairs if p["task"] == "noise"]  # one of 15 / 25 / 50, round-robin
    assert sigmas == [15, 25, 50, 15, 25, 50]


def test_quality_prompts_train_and_resume(triplets, tmp_path):
    def run(steps, *extra):
        return train_quality_prompts.main(train_quality_prompts.parse_args(
            ["--triplets", str(triplets), "--output_dir", str(tmp_path), "--crop", "32", "--train_batch_size", "2",
             "--max_train_steps", str(steps), "--checkpointing_steps", "2", "--val_holdout", "1", "--cpu", *extra]))  # fmt: skip

    straight = run(4)
    assert len(straight) == 4 and (tmp_path / "checkpoint-2" / "quality_prompts.safetensors").is_file()
    assert not list(tmp_path.glob(".checkpoint-*"))  # written to a temporary folder, then renamed
    shutil.rmtree(tmp_path / "checkpoint-4")  # as if the run had stopped right after step 2
    resumed = run(4, "--resume_from_checkpoint", "latest")
    assert [h["step"] for h in resumed] == [3, 4] and "val_accuracy" in resumed[-1]
    # the resumed run continues exactly where it stopped (weights, optimiser, schedule, data order)
    assert [h["loss"] for h in resumed] == pytest.approx([h["loss"] for h in straight[2:]], rel=1e-4)
    from defusion.perception import QualityPerceiver

    QualityPerceiver.from_clip(None).load_prompts(tmp_path)
    with pytest.raises(FileNotFoundError, match="triplets"):
        train_quality_prompts.main(train_quality_prompts.parse_args(["--triplets", str(tmp_path), "--output_dir", str(tmp_path / "x")]))
