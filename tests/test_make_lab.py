"""The README's first command: `make lab` serves the course for root and non-root users, with or without a display,
and prints the address to open. The test runs it for real, as the user running the tests (root in CI)."""

import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab/tree/00_welcome\.ipynb\?token=([0-9a-f]+)")


def _lab_tool():
    spec = importlib.util.spec_from_file_location("latentlab_tools_lab", ROOT / "tools" / "lab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("euid, system, env, allow_root, no_browser", [
    (0, "Linux", {}, True, True),                          # Docker, a cloud machine: root, no screen
    (1000, "Linux", {"DISPLAY": ":0"}, False, False),       # a Linux desktop
    (1000, "Linux", {"WAYLAND_DISPLAY": "wayland-0"}, False, False),
    (0, "Linux", {"DISPLAY": ":0"}, True, False),           # WSL set up as root, with WSLg
    (501, "Darwin", {}, False, False),                      # a Mac at its own screen
    (501, "Darwin", {"SSH_CONNECTION": "10.0.0.2 5 10.0.0.1 22"}, False, True),
])
def test_lab_flags_for_each_kind_of_user_and_machine(euid, system, env, allow_root, no_browser):
    flags = _lab_tool().lab_flags(euid, system, env)
    assert ("--allow-root" in flags) == allow_root and ("--no-browser" in flags) == no_browser
    assert "--LabApp.default_url=/lab/tree/00_welcome.ipynb" in flags


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fetch(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=20) as response:
        return response.status, response.read()


@pytest.mark.skipif(shutil.which("make") is None, reason="`make` is not installed")
def test_make_lab_serves_the_course_and_prints_its_address(tmp_path):
    venv = Path(sys.prefix)
    stamp = venv / ".latentlab-installed"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}  # never open a window
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log_path = tmp_path / "make-lab.log"
    # the venv the tests run in; -o: its setup stamp counts as done, so `make lab` starts at once (no reinstall)
    command = ["make", "--no-print-directory", "-o", str(stamp), "lab", f"VENV={venv}", f"PY={sys.executable}",
               f"LAB_ARGS=--ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0 --no-browser"]
    with open(log_path, "w") as log:
        make = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, found = time.monotonic() + 120, None
        while found is None:
            text = log_path.read_text()
            found = URL.search(text)
            if found is None and make.poll() is not None:
                pytest.fail(f"`make lab` exited with code {make.returncode} before serving:\n{text[-3000:]}")
            if found is None and time.monotonic() > deadline:
                pytest.fail(f"`make lab` printed no address of lesson 00 within 120 s:\n{text[-3000:]}")
            time.sleep(0.5)
        assert int(found.group(1)) == port
        assert "Running as root is not recommended" not in text
        said = next(line for line in text.splitlines() if line.startswith("make lab: starting JupyterLab"))
        assert ("as root" in said) == (os.geteuid() == 0)
        assert ("without opening a browser" in said) == (platform.system() not in ("Darwin", "Windows"))
        token = found.group(2)

        status, page = _fetch(found.group(0))  # exactly the printed address
        assert status == 200 and b"JupyterLab" in page
        status, body = _fetch(f"http://127.0.0.1:{port}/api/contents/00_welcome.ipynb?token={token}")
        notebook = json.loads(body)
        assert status == 200 and notebook["type"] == "notebook"
        assert notebook["content"]["cells"][0]["metadata"]["tags"] == ["latentlab-header"]
        assert "Welcome" in json.dumps(notebook["content"]["cells"][1]["source"])
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGTERM)  # make and JupyterLab share the session started above
            try:
                make.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait()
