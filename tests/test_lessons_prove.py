"""Lessons whose claims prove themselves: a broken building block fails the lesson that uses it, and lesson 00's
course map names exactly the lessons that exist.

Each broken-block test runs one lesson in quick mode with a first cell that breaks one piece of latentlab in the
kernel, and expects the lesson's own check (an assert with a message, in the cell that states the claim) to stop
it. Both lessons stop early, at the first comparison with diffusers, so the two runs take seconds.
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
