"""Shared test fixtures. The offline set-up (network guard in every process, offline env, quick mode) lives in the
repository's root conftest.py so that it also covers the notebooks; modules of tiny-tensor tests can ask for one
torch thread (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""

from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_thread():
    """tiny tensors gain nothing from threads, and on a busy machine two threads wait on each other"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def vae_recipe_refusal(tmp_path, capsys):
    """a function that runs `latentlab train recipe recipes/vae.toml --smoke`, checks it was refused in one line with
    nothing run or written, and returns that line (for tests that take away a photo source the recipe needs)"""
    from latentlab.cli import main

    def refusal() -> str:
        out = tmp_path / "out"
        recipe = Path(__file__).parents[1] / "recipes" / "vae.toml"
        assert main(["train", "recipe", str(recipe), "--smoke", "--out-dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and not out.exists()  # one sentence; nothing ran, nothing was written
        return err

    return refusal
