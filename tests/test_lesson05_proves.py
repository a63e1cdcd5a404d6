"""Lesson 05 proves its own claims: with a broken `q_sample` patched in, the notebook fails at its own check.

The lesson states that one jump of `q_sample` lands exactly where 500 single steps do; its cell asserts that. This
test runs a copy of the lesson (quick mode, offline, from the root conftest) with a cell after the imports that
replaces `latentlab.diffusion.q_sample` by a classic slip, the signal scaled by alpha_bar instead of its square root,
and expects the run to stop at that assertion, with its message, rather than print wrong numbers and pass.
One notebook run: about as long as the lesson's own notebook test.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

LESSON = Path(__file__).resolve().parent.parent / "notebooks" / "05_forward_diffusion.ipynb"

BREAK_Q_SAMPLE = '''
import latentlab.diffusion


def broken_q_sample(x0, t, noise, alphas_cumprod):  # the slip: alpha_bar where its square root belongs
    t = torch.as_tensor(t).reshape(-1)
    a = alphas_cumprod[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return a * x0 + (1 - a).sqrt() * noise


latentlab.diffusion.q_sample = broken_q_sample
'''


def _imports_cell(nb) -> int:
    """index of the lesson's first code cell after the Colab setup cell: its imports"""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "latentlab-setup" not in cell.metadata.get("tags", []):
            assert "from latentlab import" in cell.source, "lesson 05's first code cell should be its imports"
            return i
    raise AssertionError("lesson 05 has no code cell")


def test_a_broken_q_sample_fails_lesson_05_at_its_own_check():
    nb = nbformat.read(LESSON, as_version=4)
    nb.cells.insert(_imports_cell(nb) + 1, nbformat.v4.new_code_cell(BREAK_Q_SAMPLE))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(LESSON.parent)}})
    with pytest.raises(CellExecutionError, match=r"AssertionError.*the jump is not exact"):
        client.execute()
