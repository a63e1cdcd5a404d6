"""The offline guarantee holds for every process the tests start, and comes from the test configuration itself.

192.0.2.1 is TEST-NET-1 (RFC 5737), never routed; the guard refuses before a packet is sent anyway.
"""

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRY_THE_NETWORK = textwrap.dedent("""
    import os, socket
    for what, attempt in [("connect", lambda: socket.create_connection(("192.0.2.1", 443), timeout=3)),
                          ("dns", lambda: socket.getaddrinfo("huggingface.co", 443))]:
        try:
            attempt()
            print(what, "REACHED")
        except OSError as err:
            print(what, "refused" if "tests must not use the network" in str(err) else f"other error: {err}")
    print("quick", os.environ.get("LATENTLAB_QUICK"), "hub-offline", os.environ.get("HF_HUB_OFFLINE"))
""")
EXPECTED = ["connect refused", "dns refused", "quick 1 hub-offline 1"]


def test_this_process_refuses_the_network_but_not_loopback():
    with pytest.raises(OSError, match="tests must not use the network"):
        socket.create_connection(("192.0.2.1", 443), timeout=3)
    with pytest.raises(socket.gaierror, match="tests must not use the network"):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(OSError, match="tests must not use the network"):
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53))
    with socket.socket() as server:  # loopback stays open: the JupyterLab tests need it
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=3):
            pass
        with socket.create_connection(("localhost", server.getsockname()[1]), timeout=3):
            pass


def test_a_python_subprocess_refuses_the_network():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", TRY_THE_NETWORK], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == EXPECTED, out.stdout
    assert time.perf_counter() - start < 30  # refused at once, no DNS or connect timeout


def test_a_notebook_kernel_refuses_the_network():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TRY_THE_NETWORK)])
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert printed.split("\n")[:3] == EXPECTED, printed


def test_a_plain_pytest_run_is_offline_and_quick_without_the_makefile():
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LATENTLAB_QUICK") and not k.upper().endswith("_PROXY") and "OFFLINE" not in k}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/offline/probe_offline.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout
