"""Test setup: everything offline, small images, fixed seeds."""

import os

# No test may reach a hub: set before anything imports huggingface_hub / transformers / datasets.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["DIFFUSERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def photo():
    """A 192 x 256 RGB crop of the bundled clean sample (float32 HWC in [0, 1])."""
    from defusion.assets import sample_path
    from defusion.images import load_image

    img = load_image(sample_path("clean"))
    return np.ascontiguousarray(img[60:252, 120:376])


def psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
