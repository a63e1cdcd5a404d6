"""Run by tests/test_offline.py as a fresh `python -m pytest` with none of the Makefile's variables: the test
configuration alone must make the run offline and quick (collected only when named on the command line)."""

import os
import socket

import pytest


def test_the_configuration_alone_makes_the_run_offline_and_quick():
    assert os.environ["LATENTLAB_QUICK"] == "1"
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HTTPS_PROXY"] == "http://127.0.0.1:9"
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0].endswith(os.path.join("tests", "offline"))
    with pytest.raises(OSError, match="tests must not use the network"):
        socket.create_connection(("192.0.2.1", 9), timeout=2)
