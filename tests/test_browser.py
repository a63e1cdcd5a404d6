"""A real browser: JupyterLab on localhost, headless Chromium driven by Playwright: lesson 04's channel slider, and
lesson 08's sampling preview.

The test opens lesson 04, runs all cells from the Run menu, waits for the channel-slider app, reads the decoded
image (the PNG behind the widget's <img>), moves a slider with the keyboard and checks that the picture changed.
The browser is found by one function, `find_chromium` in tools/chromium.py (Debian's `chromium`, which `make test`
installs through apt, or Chrome / Chromium / Playwright's download elsewhere). Where there is none and no apt to
install one (macOS without Chrome, other distributions) the test is skipped with the reason; where apt exists, a
missing browser fails it. A screenshot is saved on failure; the server and browser always shut down.
"""

import importlib.util
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
LESSON = "04_latent_channels.ipynb"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-proxy-server"]
RUN_TIMEOUT_S = 300  # the whole lesson in quick mode on a busy 2-core machine, with room to spare
STEP_TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, method: str = "GET") -> int:
    """HTTP status of a request to the local server (proxies bypassed)"""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    try:
        with opener.open(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab serving a copy of notebooks/ on a random local port -> (base url, token); always stopped."""
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp_path / "lab-settings" / "@jupyterlab"
    for extension, name, values in [
        ("apputils-extension", "notification", {"fetchNews": "false", "checkForUpdates": False}),  # no news toast
        ("notebook-extension", "tracker", {"windowingMode": "none"}),  # every cell in the DOM, even off screen
    ]:
        (settings / extension).mkdir(parents=True, exist_ok=True)
        (settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
    port, token = _free_port(), "latentlab-browser-test"
    env = {
        **os.environ,
        "LATENTLAB_QUICK": "1",
        "HF_HUB_OFFLINE": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.open_browser=False",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.terminals_enabled=False",
         "--LabApp.extension_manager=readonly", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {server.returncode}; see {tmp_path / 'jupyterlab.log'}.")
            try:
                if _get(f"{base}/api/status", token) == 200:
                    break
            except OSError:  # not listening yet
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer on {base} within 90 s; see {tmp_path / 'jupyterlab.log'}.")
            time.sleep(0.5)
        yield base, token
    finally:
        if server.poll() is None:
            try:
                _get(f"{base}/api/shutdown", token, method="POST")  # stops its kernels, then itself
                server.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


def _image_bytes(page, img) -> bytes:
    """the bytes behind an <img> (a blob: URL made by ipywidgets.Image), fetched inside the page"""
    data = page.evaluate(
        "async (el) => { const r = await fetch(el.src); return Array.from(new Uint8Array(await r.arrayBuffer())); }",
        img,
    )
    return bytes(data)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _chromium_tool():
    spec = importlib.util.spec_from_file_location("latentlab_tools_chromium", ROOT / "tools" / "chromium.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def chromium() -> Path:
    """the browser from tools/chromium.py; none: a skip with the reason, or a failure where apt could install it"""
    path, why = _chromium_tool().find_chromium()
    if path is None:
        if shutil.which("apt-get"):
            pytest.fail(f"{why}; `make test` installs Debian's chromium first (python tools/chromium.py --install).")
        pytest.skip(f"no browser for the JupyterLab test: {why}")
    return path


def test_without_a_browser_or_apt_the_install_step_says_the_test_will_skip(monkeypatch, capsys, tmp_path):
    tool = _chromium_tool()
    monkeypatch.delenv(tool.ENV_VAR, raising=False)
    monkeypatch.setattr(tool, "DEBIAN", tmp_path / "no-chromium")
    monkeypatch.setattr(tool, "MACOS_APPS", [tmp_path / "no-app"])
    monkeypatch.setattr(tool.shutil, "which", lambda name: None)  # no apt-get, no chromium on PATH
    monkeypatch.setattr(tool, "playwright_chromium", lambda: None)
    attempts = []
    monkeypatch.setattr(tool.subprocess, "run", lambda cmd, **kw: attempts.append(cmd))
    assert tool.install() == 0
    assert attempts and attempts[0][1:] == ["-m", "playwright", "install", "chromium"]  # what the platform offers
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("chromium.py: the browser test will be skipped: no Chrome or Chromium")
    # a Chrome found on the way is used, in the order the tool documents
    chrome = tmp_path / "Google Chrome"
    chrome.write_text("#!/bin/sh\n")
    chrome.chmod(0o755)
    monkeypatch.setattr(tool, "MACOS_APPS", [chrome])
    assert tool.find_chromium() == (chrome, "the macOS application")
    monkeypatch.setenv(tool.ENV_VAR, str(tmp_path / "missing"))
    assert tool.find_chromium()[0] is None and tool.ENV_VAR in tool.find_chromium()[1]


def test_lesson04_channel_slider_redraws_in_chromium(chromium, jupyterlab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token = jupyterlab
    assert (ROOT / "notebooks" / LESSON).exists(), f"notebooks/{LESSON} is missing"
    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(STEP_TIMEOUT_MS)
        try:
            page.goto(f"{base}/lab/tree/{LESSON}?token={token}")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            # Run All needs a connected kernel, else JupyterLab asks which kernel to start; the status bar says
            # "Python 3 (ipykernel) | Idle" once the notebook's kernelspec has started and connected
            page.locator("#jp-main-statusbar").get_by_text(re.compile(r"ipykernel\) \| Idle")).wait_for()
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu").get_by_text("Run All Cells", exact=True).click()
            page.wait_for_timeout(1000)
            if page.locator(".jp-Dialog").count():  # e.g. the kernel restarted meanwhile: accept the default
                page.locator(".jp-Dialog .jp-mod-accept").click()

            # wait for the app, or stop early at the first error a cell prints
            page.wait_for_function(
                "() => document.querySelector('.latentlab-channel-sliders') !== null || [...document.querySelectorAll("
                "'.jp-OutputArea-output')].some(e => e.innerText.includes('Traceback (most recent call last)'))",
                timeout=RUN_TIMEOUT_S * 1000,
            )
            errors = page.locator(".jp-OutputArea-output", has_text="Traceback (most recent call last)")
            if errors.count():
                pytest.fail(f"a cell of {LESSON} failed in JupyterLab:\n{errors.first.inner_text()[-1500:]}")
            app = page.locator(".latentlab-channel-sliders").first
            app.wait_for(state="visible")
            img = app.locator("img.latentlab-decoded").first
            img.wait_for(state="visible")
            page.wait_for_function("(el) => el.src && el.complete && el.naturalWidth > 0", arg=img.element_handle())
            before = _pixels(_image_bytes(page, img.element_handle()))
            assert before.shape[0] == before.shape[1] == 256, f"decoded image is {before.shape}, expected 256x256"

            handle = app.locator(".latentlab-offset-0 .noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            for _ in range(3):
                page.keyboard.press("PageUp")  # noUiSlider: 5 steps per press
            readout = app.locator(".latentlab-offset-0 .widget-readout").first
            page.wait_for_function("(el) => parseFloat(el.textContent) > 0", arg=readout.element_handle())
            # the kernel decodes once per slider value it receives; poll the picture until it shows the edit
            app.locator(".latentlab-status", has_text="decoded in").wait_for()
            deadline, change = time.monotonic() + STEP_TIMEOUT_MS / 1000, 0.0
            while time.monotonic() < deadline:
                page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle())
                change = float(np.abs(_pixels(_image_bytes(page, img.element_handle())) - before).mean())
                if change > 1.0:
                    break
                page.wait_for_timeout(500)
            status = app.locator(".latentlab-status").first.inner_text()
            print(f"\nbrowser test: offset 0 -> {readout.inner_text()}, mean pixel change {change:.2f}/255, "
                  f"{status}, {time.monotonic() - started:.0f} s in the browser")
            assert change > 1.0, f"the decoded image barely changed (mean {change:.3f}/255) after moving the slider"
            assert "decoded in" in status
        except BaseException:  # also pytest.fail: the screenshot is what explains a browser failure
            shot = tmp_path / "browser-failure.png"
            try:
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the failure: {shot}")
            except Exception as err:  # noqa: BLE001 - the original failure matters more
                print(f"\n(no screenshot: {err})")
            raise
        finally:
            browser.close()



SAMPLING_CELL = """\
import torch
from diffusers import DDIMScheduler

from latentlab import checkpoints, previews
from latentlab.tiny_decoder import TinyDecoder

vae = checkpoints.load_denoiser_vae("denoiser", "cpu")
denoiser = checkpoints.load_course_denoiser("denoiser", "cpu")
ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule=checkpoints.course_manifest("denoiser")["beta_schedule"],
                     clip_sample=False)
torch.manual_seed(0)
linear = previews.LinearPreview(torch.randn(4, 3), torch.zeros(3))
previews.SamplingPreview(denoiser, ddim, 40, (1, 4, 8, 8), vae, TinyDecoder().eval(), linear).app
"""


@pytest.mark.skip(reason="unfinished (issue 17): in this generated notebook JupyterLab showed the app's text repr, not "
                         "the widget, so the wait for .latentlab-sampling-preview timed out; not yet understood")
def test_sampling_preview_changes_as_the_steps_advance_in_chromium(chromium, jupyterlab, tmp_path):
    """lesson 08's app, alone in a notebook: press sample, and the predicted-clean picture changes step by step"""
    from playwright.sync_api import sync_playwright

    base, token = jupyterlab
    cell = {"cell_type": "code", "metadata": {}, "source": SAMPLING_CELL, "outputs": [], "execution_count": None}
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    (tmp_path / "notebooks" / "sampling.ipynb").write_text(
        json.dumps({"cells": [cell], "metadata": kernel, "nbformat": 4, "nbformat_minor": 5}))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(STEP_TIMEOUT_MS)
        try:
            page.goto(f"{base}/lab/tree/sampling.ipynb?token={token}")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            page.locator("#jp-main-statusbar").get_by_text(re.compile(r"ipykernel\) \| Idle")).wait_for()
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu").get_by_text("Run All Cells", exact=True).click()
            page.wait_for_function(
                "() => document.querySelector('.latentlab-sampling-preview') !== null || [...document.querySelectorAll("
                "'.jp-OutputArea-output')].some(e => e.innerText.includes('Traceback (most recent call last)'))",
                timeout=RUN_TIMEOUT_S * 1000,
            )
            errors = page.locator(".jp-OutputArea-output", has_text="Traceback (most recent call last)")
            if errors.count():
                pytest.fail(f"the sampling app failed in JupyterLab:\n{errors.first.inner_text()[-1500:]}")
            app = page.locator(".latentlab-sampling-preview").first
            app.locator(".latentlab-sampling-run").first.click()
            img = app.locator("img.latentlab-sampling-predicted").first
            status = app.locator(".latentlab-sampling-status").first
            pictures, steps = [], set()
            deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
            while time.monotonic() < deadline and "move the slider" not in status.inner_text():
                if img.evaluate("(el) => !!el.src && el.complete && el.naturalWidth > 0"):
                    pixels = _pixels(_image_bytes(page, img.element_handle()))
                    if not pictures or np.abs(pixels - pictures[-1]).mean() > 0.5:
                        pictures.append(pixels)
                        steps.add(status.inner_text())
                page.wait_for_timeout(100)
            final = app.locator("img.latentlab-sampling-final").first
            page.wait_for_function("(el) => el.src && el.complete && el.naturalWidth > 0", arg=final.element_handle())
            print(f"\nbrowser test: {len(pictures)} different pictures while sampling; {status.inner_text()}")
            assert "move the slider" in status.inner_text(), "the sampler did not finish"
            assert len(pictures) >= 3, f"the picture changed only {len(pictures)} times while 40 steps ran"
        except BaseException:
            shot = tmp_path / "browser-sampling-failure.png"
            try:
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the failure: {shot}")
            except Exception as err:  # noqa: BLE001 - the original failure matters more
                print(f"\n(no screenshot: {err})")
            raise
        finally:
            browser.close()
