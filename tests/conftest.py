"""Shared test fixtures. The offline set-up (network guard in every process, offline env, quick mode) lives in the
repository's root conftest.py so that it also covers the notebooks; modules of tiny-tensor tests can ask for one
torch thread (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """tiny tensors gain nothing from threads, and on a busy machine two threads wait on each other"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
