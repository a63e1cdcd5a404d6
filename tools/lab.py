"""Start JupyterLab on lesson 00 for `make lab`, as root or not, with or without a display; it prints the URL to open.

    python tools/lab.py [JUPYTERLAB OPTIONS ...]     e.g. --port=9999, or --ip=0.0.0.0 inside a container

JupyterLab refuses to run as root without `--allow-root` (Docker, cloud machines, WSL set up as root) and tries
to open a browser even where there is no screen; this adds those two flags only where they are needed. It serves
notebooks/ and opens lesson 00, so the printed http://…/lab/tree/00_welcome.ipynb?token=… address is the lesson.
"""

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
FIRST_LESSON = "00_welcome.ipynb"


def has_display(system: str, env: Mapping[str, str]) -> bool:
    """True where a browser window can open: a Mac at its own screen, Windows, or an X / Wayland display"""
    if system == "Darwin":
        return "SSH_CONNECTION" not in env
    if system == "Windows":
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def lab_flags(euid: int, system: str, env: Mapping[str, str]) -> list[str]:
    """the JupyterLab options `make lab` adds for this user and machine"""
    flags = [f"--ServerApp.root_dir={NOTEBOOKS}", f"--LabApp.default_url=/lab/tree/{FIRST_LESSON}"]
    if euid == 0:
        flags.append("--allow-root")
    if not has_display(system, env):
        flags.append("--no-browser")
    return flags


def main(argv: list[str]) -> int:
    euid = os.geteuid() if hasattr(os, "geteuid") else -1
    flags = lab_flags(euid, platform.system(), os.environ)
    why = [w for f, w in [("--allow-root", "as root"), ("--no-browser", "without opening a browser (no display)")]
           if f in flags]
    print(f"make lab: starting JupyterLab{' ' + ', '.join(why) if why else ''}; open the "
          f"http://…/lab/tree/{FIRST_LESSON}?token=… address printed below. Ctrl-C twice stops it.", flush=True)
    command = [sys.executable, "-m", "jupyterlab", *flags, *argv]
    os.execv(sys.executable, command)
    return 1  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
