"""Shared test set-up: tests never touch the network (loopback stays open for the JupyterLab browser test), and
modules of tiny-tensor tests can ask for one torch thread (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""

import ipaddress
import socket

import pytest
import torch

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"tests must not use the network (tried to connect to {host})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """refuse every non-loopback connection made in the test process"""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def one_thread():
    """tiny tensors gain nothing from threads, and on a busy machine two threads wait on each other"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
