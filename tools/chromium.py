"""Find a Chromium for the browser test (tests/test_browser.py), and install one where the platform can.

    python tools/chromium.py            say which browser the test will use, or why it will be skipped
    python tools/chromium.py --install  `make test`'s first step: Debian's chromium through apt where apt exists
                                        (needs root or sudo), else Playwright's own Chromium; if neither works,
                                        one line saying that the browser test will be skipped, and exit 0

Looked for, in order: $LATENTLAB_CHROMIUM, Debian's /usr/bin/chromium, chromium / Chrome on PATH, the standard
macOS applications, then Playwright's own download (`python -m playwright install chromium`).
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # tools/apt_get.py, also when a test loads this file by path
from apt_get import apt_install  # noqa: E402

ENV_VAR = "LATENTLAB_CHROMIUM"
DEBIAN = Path("/usr/bin/chromium")
ON_PATH = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"]
MACOS_APPS = [
    Path("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"),
    Path("/Applications/Chromium.app/Contents/MacOS/Chromium"),
    Path.home() / "Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
]


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def playwright_chromium() -> Path | None:
    """Playwright's own Chromium, when it has been downloaded"""
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            path = Path(p.chromium.executable_path)
    except Exception:  # noqa: BLE001 - no Playwright, or its driver cannot start: no browser from there
        return None
    return path if _executable(path) else None


def find_chromium() -> tuple[Path | None, str]:
    """the browser for the test -> (path, where it came from), or (None, why there is none)"""
    if os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
        return (path, f"${ENV_VAR}") if _executable(path) else (None, f"${ENV_VAR}={path} is not an executable")
    if _executable(DEBIAN):
        return DEBIAN, "Debian's chromium package"
    for name in ON_PATH:
        if found := shutil.which(name):
            return Path(found), f"`{name}` on PATH"
    for app in MACOS_APPS:
        if _executable(app):
            return app, "the macOS application"
    if path := playwright_chromium():
        return path, "Playwright's own download"
    return None, (f"no Chrome or Chromium found (${ENV_VAR}, {DEBIAN}, {'/'.join(ON_PATH[:3])} on PATH, "
                  "/Applications, Playwright's download); `python -m playwright install chromium` provides one")


def install() -> int:
    """make sure the browser test has a browser -> exit status (1 only where apt should have provided one)"""
    if find_chromium()[0] is not None:
        return 0
    if shutil.which("apt-get"):
        if not apt_install(["chromium"], "chromium.py", "for the browser test"):
            print(f"chromium.py: Chromium is missing at {DEBIAN}; run 'sudo apt-get install -y chromium' "
                  "(needs root).", file=sys.stderr)
            return 1
        path, why = find_chromium()
        if path is None:
            print(f"chromium.py: apt-get finished but {why}; install the 'chromium' package by hand.", file=sys.stderr)
            return 1
        return 0
    print("chromium.py: no apt-get here; trying Playwright's own Chromium (python -m playwright install chromium)...",
          flush=True)
    subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"])
    path, why = find_chromium()
    if path is None:
        print(f"chromium.py: the browser test will be skipped: {why}.", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="install a Chromium when none is found")
    if parser.parse_args().install:
        return install()
    path, why = find_chromium()
    print(f"the browser test uses {path} ({why})" if path else f"the browser test will be skipped: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
