"""Lessons whose claims prove themselves: a broken building block fails the lesson that uses it, and lesson 00's
course map names exactly the lessons that exist.

Each broken-block test runs one lesson in quick mode with a first cell that breaks one piece of latentlab in the
kernel, and expects the lesson's own check (an assert with a message, in the cell that states the claim) to stop
it. Lessons 02 and 06 stop early, at the first comparison with diffusers, so those runs take seconds; lesson 05
(a broken `q_sample`) runs until its jump check, about as long as its own notebook test.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_the_course_map_in_lesson_00_names_every_lesson_and_no_missing_one():
    lessons = sorted(int(p.name[:2]) for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    cells = json.loads((NOTEBOOKS / "00_welcome.ipynb").read_text())["cells"]
    the_map = next(_source(c) for c in cells if _source(c).startswith("## The map"))
    rows = [int(n) for n in re.findall(r"^\| (\d\d) \|", the_map, flags=re.M)]
    assert rows == [n for n in lessons if n > 0], "lesson 00's map should list lessons 01 onwards, each that exists"
    assert not re.search(r"not in this release|being written|coming soon", the_map, flags=re.I)


BREAK_RESBLOCK_RESIDUAL = '''
import torch.nn.functional as F
from latentlab import blocks

def _no_residual(self, x, temb=None):  # a ResBlock that forgets to add its input back
    h = self.conv1(F.silu(self.norm1(x)))
    if self.time_emb_proj is not None and temb is not None:
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
    return self.conv2(self.dropout(F.silu(self.norm2(h))))

blocks.ResBlock.forward = _no_residual
'''

BREAK_UNET_SKIPS = '''
import torch
from latentlab import unet

def _empty_skips(self, x, skips, temb):  # an up stage that concatenates zeros where the skip's content belongs
    for i, resnet in enumerate(self.resnets):
        x = resnet(torch.cat([x, torch.zeros_like(skips.pop())], dim=1), temb)
        if self.attentions:
            x = self.attentions[i](x)
    for upsampler in self.upsamplers:
        x = upsampler(x)
    return x

unet.UpBlock.forward = _empty_skips
'''


@pytest.mark.parametrize("lesson,breakage,message", [
    ("02_autoencoder.ipynb", BREAK_RESBLOCK_RESIDUAL, "latentlab's ResBlock does not compute what diffusers' "
                                                      "ResnetBlock2D does"),
    ("06_unet.ipynb", BREAK_UNET_SKIPS, "latentlab's UNet does not compute what diffusers' UNet2DModel does"),
], ids=["02-resblock-without-residual", "06-unet-without-skips"])
def test_a_broken_building_block_fails_the_lesson_that_uses_it(lesson, breakage, message):
    nb = nbformat.read(NOTEBOOKS / lesson, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(breakage))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    with pytest.raises(CellExecutionError, match=re.escape(message)):
        client.execute()


# lesson 05 states that one jump of q_sample lands exactly where 500 single steps do, and asserts it: with the signal
# scaled by alpha_bar instead of its square root (a classic slip), the run must stop at that assertion
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
    nb = nbformat.read(NOTEBOOKS / "05_forward_diffusion.ipynb", as_version=4)
    nb.cells.insert(_imports_cell(nb) + 1, nbformat.v4.new_code_cell(BREAK_Q_SAMPLE))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    with pytest.raises(CellExecutionError, match=r"AssertionError.*the jump is not exact"):
        client.execute()
