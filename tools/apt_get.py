"""Install Debian packages for `make test` and `make weights` (tools/chromium.py, tools/debian_photos.py).

One function, so the two install steps ask for root the same way: as root, or through password-less `sudo -n`;
never a password prompt in the middle of a test run.
"""

import os
import subprocess


def apt_install(packages: list[str], tool: str, why: str) -> bool:
    """`apt-get update` then install `packages`, saying `tool: installing ... (why)` -> False when not allowed"""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        return False
    print(f"{tool}: installing Debian's {' and '.join(packages)} ({why})...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True,
                   env=env)
    return True
