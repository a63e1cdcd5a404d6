"""A real browser: JupyterLab on localhost, headless Chromium driven by Playwright: lesson 04's channel slider, and
lesson 08's sampling preview.

The lesson-04 test opens the lesson, runs all cells from the Run menu, waits for the channel-slider app, reads the
decoded image (the PNG behind the widget's <img>), moves a slider with the keyboard and checks that the picture
changed. The sampling test runs a one-cell notebook that builds `previews.SamplingPreview` on the shipped denoiser
(8x8 latents, seconds), presses sample, reads every picture the kernel sent (ipywidgets' blob URLs are kept alive for
it), checks that they change step by step, and scrubs back to step 1. JupyterLab without the ipywidgets manager
extension shows widgets as text; the server fixture fails at once, saying so, instead of timing out.
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
from contextlib import contextmanager
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
WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"  # the lab extension that renders ipywidgets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, token: str, method: str = "GET") -> tuple[int, str]:
    """HTTP status and body of a request to the local server (proxies bypassed)"""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, ""


def _get(url: str, token: str, method: str = "GET") -> int:
    """HTTP status of a request to the local server"""
    return _request(url, token, method)[0]


def _lab_extensions(base: str, token: str) -> list[str]:
    """the prebuilt extensions JupyterLab's page loads (its page config, as the browser receives it)"""
    _, html = _request(f"{base}/lab", token)
    config = re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', html, re.S)
    return [e["name"] for e in json.loads(config.group(1)).get("federated_extensions", [])] if config else []


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
        if WIDGET_MANAGER not in _lab_extensions(base, token):
            # without it JupyterLab shows every widget as its text repr ("VBox(children=...)")
            pytest.fail(f"JupyterLab has no {WIDGET_MANAGER} extension, so widgets would show as text: install "
                        f"jupyterlab_widgets into {sys.prefix} or set JUPYTER_PATH to a share/jupyter that has it.")
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


def _blob_bytes(page, src: str) -> bytes:
    """the bytes behind a blob: URL (as ipywidgets.Image makes them), fetched inside the page"""
    data = page.evaluate(
        "async (src) => { const r = await fetch(src); return Array.from(new Uint8Array(await r.arrayBuffer())); }",
        src,
    )
    return bytes(data)


def _image_bytes(page, img) -> bytes:
    """the bytes of the picture an <img> shows now"""
    return _blob_bytes(page, img.evaluate("(el) => el.src"))


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


@contextmanager
def _browser_page(chromium: Path, shot: Path, init_script: str | None = None):
    """a headless Chromium page; on any failure (pytest.fail too) a full-page screenshot to `shot`; always closed"""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(STEP_TIMEOUT_MS)
        if init_script:
            page.add_init_script(init_script)
        try:
            yield page
        except BaseException:  # the screenshot is what explains a browser failure
            try:
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the failure: {shot}")
            except Exception as err:  # noqa: BLE001 - the original failure matters more
                print(f"\n(no screenshot: {err})")
            raise
        finally:
            browser.close()


def _run_all_until(page, base: str, token: str, notebook: str, app_class: str):
    """open `notebook` in JupyterLab, Run All Cells, wait for the widget with CSS class `app_class` -> its locator

    Fails at once, with the cell's traceback, when a cell raises, and in one sentence when the output is the
    widget's text repr (JupyterLab without its ipywidgets manager, or an object that is not a widget displayed).
    """
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    # Run All needs a connected kernel, else JupyterLab asks which kernel to start; the status bar says
    # "Python 3 (ipykernel) | Idle" once the notebook's kernelspec has started and connected
    page.locator("#jp-main-statusbar").get_by_text(re.compile(r"ipykernel\) \| Idle")).wait_for()
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu").get_by_text("Run All Cells", exact=True).click()
    page.wait_for_timeout(1000)
    if page.locator(".jp-Dialog").count():  # e.g. the kernel restarted meanwhile: accept the default
        page.locator(".jp-Dialog .jp-mod-accept").click()
    # the app, a traceback, or a widget's text repr ("VBox(children=...)"), whichever comes first
    page.wait_for_function(
        "(cls) => document.querySelector('.' + cls) !== null || [...document.querySelectorAll("
        "'.jp-OutputArea-output')].some(e => e.innerText.includes('Traceback (most recent call last)') "
        "|| /^[VH]Box\\(children=/.test(e.innerText))",
        arg=app_class, timeout=RUN_TIMEOUT_S * 1000,
    )
    errors = page.locator(".jp-OutputArea-output", has_text="Traceback (most recent call last)")
    if errors.count():
        pytest.fail(f"a cell of {notebook} failed in JupyterLab:\n{errors.first.inner_text()[-1500:]}")
    if not page.locator(f".{app_class}").count():
        pytest.fail(f"JupyterLab showed the app of {notebook} as text, not as a widget: "
                    f"{page.locator('.jp-OutputArea-output').last.inner_text()[:120]}")
    app = page.locator(f".{app_class}").first
    app.wait_for(state="visible")
    return app


def test_lesson04_channel_slider_redraws_in_chromium(chromium, jupyterlab, tmp_path):
    base, token = jupyterlab
    assert (ROOT / "notebooks" / LESSON).exists(), f"notebooks/{LESSON} is missing"
    started = time.monotonic()
    with _browser_page(chromium, tmp_path / "browser-failure.png") as page:
        app = _run_all_until(page, base, token, LESSON, "latentlab-channel-sliders")
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


SAMPLING_STEPS = 40
SAMPLING_CELL = f"""\
import torch
from diffusers import DDIMScheduler

from latentlab import checkpoints, previews

vae = checkpoints.load_denoiser_vae("denoiser", "cpu")
denoiser = checkpoints.load_course_denoiser("denoiser", "cpu")
ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule=checkpoints.course_manifest("denoiser")["beta_schedule"],
                     clip_sample=False)
torch.manual_seed(0)
linear = previews.LinearPreview(torch.randn(4, 3), torch.zeros(3))
# the denoiser's own VAE stands in for the tiny decoder: an untrained one draws every step in the same grey
previews.SamplingPreview(denoiser, ddim, {SAMPLING_STEPS}, (1, 4, 8, 8), vae, vae, linear).app
"""
# ipywidgets' Image revokes the blob: URL of the picture it replaces; keeping them lets the test read every picture
# the kernel sent, however fast the steps come, instead of whichever one a poll happens to catch
KEEP_BLOB_URLS = "URL.revokeObjectURL = () => {};"
RECORD_SRC = """([img, name]) => { (window.latentlabSrcs ??= {})[name] = [];
    new MutationObserver(() => window.latentlabSrcs[name].push(img.src)).observe(img, {attributeFilter: ['src']}); }"""


def test_sampling_preview_changes_as_the_steps_advance_in_chromium(chromium, jupyterlab, tmp_path):
    """lesson 08's app, alone in a notebook: press sample, both previews change step by step, and scrubbing back
    to step 1 shows step 1's pictures again"""
    base, token = jupyterlab
    cell = {"cell_type": "code", "metadata": {}, "source": SAMPLING_CELL, "outputs": [], "execution_count": None}
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    (tmp_path / "notebooks" / "sampling.ipynb").write_text(
        json.dumps({"cells": [cell], "metadata": kernel, "nbformat": 4, "nbformat_minor": 5}))
    with _browser_page(chromium, tmp_path / "browser-sampling-failure.png", KEEP_BLOB_URLS) as page:
        app = _run_all_until(page, base, token, "sampling.ipynb", "latentlab-sampling-preview")
        previews = ("noisy", "predicted")
        for name in previews:
            page.evaluate(RECORD_SRC, [app.locator(f"img.latentlab-sampling-{name}").first.element_handle(), name])
        status = app.locator(".latentlab-sampling-status").first
        app.locator(".latentlab-sampling-run").first.click()
        status.filter(has_text="move the slider").wait_for(timeout=RUN_TIMEOUT_S * 1000)
        final = app.locator("img.latentlab-sampling-final").first
        page.wait_for_function("(el) => el.src && el.complete && el.naturalWidth > 0", arg=final.element_handle())
        srcs = page.evaluate("() => window.latentlabSrcs")
        shown = {name: [_pixels(_blob_bytes(page, src)) for src in srcs[name]] for name in previews}
        print(f"\nbrowser test: {status.inner_text()}")
        for name, pictures in shown.items():
            changed = sum(bool(np.any(a != b)) for a, b in zip(pictures, pictures[1:]))
            drift = float(np.abs(pictures[-1] - pictures[0]).mean())
            print(f"browser test: {name}: {len(pictures)} pictures, {changed} differ from the one before, "
                  f"last vs first {drift:.1f}/255")
            assert len(pictures) == SAMPLING_STEPS, f"{len(pictures)} {name} pictures for {SAMPLING_STEPS} steps"
            assert changed >= SAMPLING_STEPS * 3 // 4, f"the {name} picture changed at only {changed} steps"
            assert drift > 5, f"the {name} picture barely moved from step 1 to the end ({drift:.2f}/255)"

        # scrub back: the slider's first position shows the first step's pictures again, not the last ones
        slider = app.locator(".latentlab-sampling-step")
        assert slider.locator(".widget-readout").first.inner_text() == str(SAMPLING_STEPS - 1)
        slider.locator(".noUi-handle").first.focus()
        page.keyboard.press("Home")
        status.filter(has_text=f"step 1 of {SAMPLING_STEPS}").wait_for()
        print(f"browser test: scrubbed to {status.inner_text()}")
        for name in previews:
            page.wait_for_function("([name, n]) => window.latentlabSrcs[name].length > n",
                                   arg=[name, SAMPLING_STEPS])
            scrubbed = _pixels(_blob_bytes(page, page.evaluate("(name) => window.latentlabSrcs[name].at(-1)", name)))
            assert np.array_equal(scrubbed, shown[name][0]), f"step 1's {name} picture differs after scrubbing back"
            assert np.abs(scrubbed - shown[name][-1]).mean() > 0.5, f"scrubbing back left the last {name} picture"
