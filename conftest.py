"""Every pytest run is offline and in quick mode, however it is started: `make test`, `python -m pytest`, or one
notebook (`python -m pytest notebooks/00_welcome.ipynb`). It sits at the repository root so that it also applies
to the notebooks, which tests/conftest.py does not reach.

- The model hub and every HTTP(S) client are told to stay offline (stray HTTP goes to a closed local port).
- tests/offline/ goes first on PYTHONPATH: its sitecustomize.py refuses non-loopback connections and name lookups
  in every Python process the tests start (kernels, JupyterLab, CLI subprocesses); this process installs it too.
- Quick mode (LATENTLAB_QUICK=1) unless the caller chose a mode, e.g. LATENTLAB_QUICK=0 for the real lessons.
"""

import importlib.util
import os
from pathlib import Path

GUARD_DIR = Path(__file__).resolve().parent / "tests" / "offline"
CLOSED_PORT = "http://127.0.0.1:9"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    **{name: CLOSED_PORT for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                                      "all_proxy")},
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def _go_offline() -> None:
    os.environ.update(OFFLINE_ENV)
    os.environ.setdefault("LATENTLAB_QUICK", "1")
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != GUARD_DIR]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(GUARD_DIR), *paths])
    spec = importlib.util.spec_from_file_location("latentlab_tests_network_guard", GUARD_DIR / "sitecustomize.py")
    guard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(guard)
    guard.install()


_go_offline()  # at import, before any test module or kernel reads the environment


def pytest_report_header(config):
    return (f"latentlab: offline (network guard {GUARD_DIR.relative_to(GUARD_DIR.parent.parent)}/sitecustomize.py), "
            f"LATENTLAB_QUICK={os.environ['LATENTLAB_QUICK']}")
