"""`defusion serve`: the page's functions on tiny models, then the real page in headless Chromium.

The browser test needs Chromium and its driver (Debian: `apt-get install chromium chromium-driver`; `.ci/run`
installs them). Without them it is skipped, unless DEFUSION_REQUIRE_BROWSER=1 (CI), where it fails instead.
DEFUSION_SCREENSHOT=PATH also writes its screenshot there: the README's picture,
`defusion/assets/web_demo.jpg`, comes from this test.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch

from defusion import degradations as D
from defusion import web
from defusion.images import save_image
from defusion.metrics import psnr


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from defusion import DefusionPipeline, RestorerPipeline

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    DefusionPipeline.from_preset("tiny").save_pretrained(d / "defusion")
    RestorerPipeline.from_preset("dfpir", "tiny").save_pretrained(d / "dfpir")
    return d


@pytest.fixture(scope="module")
def cache():
    return web.ModelCache()


def small_photo(photo, tmp_path, name="in.png"):
    return save_image(photo[:32, :48], tmp_path / name)


def test_uploads_are_checked_before_decoding(photo, tmp_path):
    path = small_photo(photo, tmp_path)
    assert web.read_upload(path, 1.0).shape == (32, 48, 3)
    with pytest.raises(ValueError, match="upload an image"):
        web.read_upload(None, 1.0)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        web.read_upload(tmp_path / "notes.png", 1.0)
    with pytest.raises(ValueError, match=r"48 x 32 .* up to 0.001 MP"):
        web.read_upload(path, 0.001)


def test_instruction_from_the_controls():
    assert web.instruction_from_controls("auto", ["rain"], 0.5, "noise") == "auto"
    assert web.instruction_from_controls("instruction", [], 0.5, " rain+noise25 ") == "rain+noise25"
    spec = web.instruction_from_controls("instruction", ["rain", "noise"], 0.8, "")
    assert [s.name for s in spec.steps] == ["rain", "noise"]
    assert spec.steps[1].sigma > web.instruction_from_controls("instruction", ["noise"], 0.2).steps[0].sigma  # strength
    for args, msg in ((("instruction", [], 0.5, ""), "pick at least one"), (("sideways",), "unsupported mode"),
                      (("instruction", [], 0.5, "smog"), "valid names")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            web.instruction_from_controls(*args)


def test_restore_with_either_pipeline_kind(folders, cache, photo):
    img = photo[:32, :48]
    noisy = D.parse("noise25").apply(img, np.random.default_rng(0))
    res = web.restore(cache, str(folders / "defusion"), noisy, "auto", reference=img)
    assert res.image.shape == img.shape and res.seconds > 0 and isinstance(res.detected, dict)
    assert set(res.metrics) == {"psnr", "ssim", "input_psnr"}
    assert res.metrics["input_psnr"] == pytest.approx(psnr(noisy, img, None))
    told = web.restore(cache, str(folders / "defusion"), noisy, "rain+noise", steps=2, self_ensemble=2, seed=3)
    assert told.instruction.startswith("rain+noise") and told.instruction_image.ndim == 3 and not told.detected
    again = web.restore(cache, str(folders / "defusion"), noisy, "rain+noise", steps=2, self_ensemble=2, seed=3)
    np.testing.assert_array_equal(told.image, again.image)  # seeded
    assert "**" in web.summary(res, noisy) and "PSNR" in web.summary(res, noisy)
    regression = web.restore(cache, str(folders / "dfpir"), noisy, "noise")
    assert regression.image.shape == img.shape and regression.instruction == "noise"
    assert web.ModelCache().defaults(str(folders / "dfpir")) == (1, 1)
    assert cache.defaults(str(folders / "defusion")) == (4, 1)
    for kw, msg in ((dict(steps=0), "steps"), (dict(self_ensemble=3), "self-ensemble"),
                    (dict(reference=img[:16]), "same size")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            web.restore(cache, str(folders / "defusion"), noisy, "auto", **kw)


def test_serve_command_checks_its_model_first(capsys, monkeypatch):
    from defusion.cli import main

    assert main(["serve", "--model", "defusion-huge", "--port", "7999"]) == 2
    assert "not shipped" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gradio", None)  # the package without the web extra
    assert main(["serve"]) == 2
    assert 'pip install -e ".[web]"' in capsys.readouterr().err


def _browser():
    """Chromium and chromedriver, or None (skip) unless the environment requires them."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import gradio  # noqa: F401
        import selenium  # noqa: F401
    except ImportError:
        chromium = None
    if chromium and driver:
        return chromium, driver
    if os.environ.get("DEFUSION_REQUIRE_BROWSER") == "1":
        pytest.fail("DEFUSION_REQUIRE_BROWSER=1 but chromium, chromedriver, gradio or selenium is missing")
    pytest.skip("needs chromium + chromedriver (apt-get install chromium chromium-driver) and the web extra")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_in_a_real_browser(photo, tmp_path):
    """`defusion serve` with the shipped model: gradio_client's /restore and a click in headless Chromium both
    restore a noisy photo, concurrent calls are queued, and the page fetches nothing from outside."""
    chromium, driver = _browser()
    from gradio_client import Client, handle_file
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from defusion.assets import sample_path
    from defusion.images import load_image

    clean = load_image(sample_path("clean"))[96:288, 128:384]  # 256 x 192: a few seconds on a CPU
    noisy_path = save_image(D.parse("noise25").apply(clean, np.random.default_rng(0)), tmp_path / "noisy.png")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "-m", "defusion.cli", "serve", "--port", str(port), "--quiet"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"the server did not start: {server.stdout.read().decode()[-3000:]}")
                time.sleep(1)

        client = Client(url, verbose=False)
        jobs = [client.submit(handle_file(str(noisy_path)), "auto", api_name="/restore") for _ in range(2)]
        outputs = [load_image(job.result(timeout=180)) for job in jobs]  # two at once: queued, both served
        for out in outputs:
            assert out.shape == clean.shape and psnr(out, clean, None) > psnr(load_image(noisy_path), clean, None) + 3
        with pytest.raises(Exception, match="not an image"):
            (tmp_path / "notes.png").write_text("not an image")
            client.predict(handle_file(str(tmp_path / "notes.png")), "auto", api_name="/restore")

        opts = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1500"):
            opts.add_argument(arg)
        opts.binary_location = chromium
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        browser = webdriver.Chrome(service=Service(driver), options=opts)
        try:
            browser.get(url)
            wait = WebDriverWait(browser, 180)
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#restore-button"))
            browser.find_element(By.CSS_SELECTOR, "#input-image input[type=file]").send_keys(str(noisy_path))
            browser.find_element(By.CSS_SELECTOR, "#reference input[type=file]").send_keys(
                str(save_image(clean, tmp_path / "clean.png"))
            )
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#reference img")) > 0)
            browser.find_element(By.CSS_SELECTOR, "#restore-button").click()
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#download a"))
            assert len(browser.find_elements(By.CSS_SELECTOR, "#result img")) == 2  # before | after
            text = " ".join(browser.find_element(By.CSS_SELECTOR, "#summary").text.split())
            assert "instruction: noise" in text and "PSNR" in text, text
            gain = float(text.split("PSNR ")[1].split(" dB")[0]) - float(text.split("(input ")[1].split(" dB")[0])
            assert gain > 3, text
            link = browser.find_element(By.CSS_SELECTOR, "#download a").get_attribute("href")
            downloaded = tmp_path / "download.png"
            downloaded.write_bytes(urllib.request.urlopen(link).read())
            assert load_image(downloaded).shape == clean.shape  # the full-resolution PNG
            browser.execute_script("window.scrollTo(0, 0)")
            shot = tmp_path / "page.png"
            browser.save_screenshot(str(shot))
            if os.environ.get("DEFUSION_SCREENSHOT"):  # e.g. defusion/assets/web_demo.jpg, the README's picture
                from PIL import Image

                picture = Image.open(shot).convert("RGB")
                picture.thumbnail((960, 2000))  # small enough for the repository
                picture.save(os.environ["DEFUSION_SCREENSHOT"], quality=80)
            requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
            fetched = {m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"}
            outside = sorted(u for u in fetched if not u.startswith((url, "data:", "blob:")))
            assert not outside, f"the page fetched from outside: {outside[:5]}"
        finally:
            browser.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
