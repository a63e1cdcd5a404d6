#!/usr/bin/env bash
# Make sure a headless Chromium exists at /usr/bin/chromium for the browser test (tests/test_browser.py).
# Idempotent: does nothing when it is already there. Playwright's own browser download is never used.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_chromium.sh: Chromium is missing at $CHROMIUM; run 'sudo apt-get install -y chromium' (needs root)." >&2
        exit 1
    fi
    echo "install_chromium.sh: installing Debian's chromium package (for the browser test)..."
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
    if [ -x "$CHROMIUM" ]; then
        "$CHROMIUM" --version || true
        exit 0
    fi
    echo "install_chromium.sh: apt-get finished but $CHROMIUM is still missing; install the 'chromium' package by hand." >&2
    exit 1
fi

echo "install_chromium.sh: no apt-get here; install Chromium so that $CHROMIUM exists (e.g. your system's chromium package) to run the browser test." >&2
exit 1
