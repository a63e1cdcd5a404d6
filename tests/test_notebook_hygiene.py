"""Notebooks are committed clean: no outputs, counts or widget state; kernelspec set; badges and navigation current."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_lessons():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb["metadata"], "widget state is committed"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"outputs committed in {path.name}"
            assert cell["execution_count"] is None, f"execution count committed in {path.name}"
    tags = [t for c in nb["cells"] for t in c["metadata"].get("tags", [])]
    assert {"latentlab-header", "latentlab-setup", "latentlab-nav"} <= set(tags)


def test_tool_reports_a_dirty_notebook(tmp_path):
    """the --check mode that `make test` runs really fails on outputs"""
    dirty = json.loads(NOTEBOOKS[0].read_text())
    code_cell = next(c for c in dirty["cells"] if c["cell_type"] == "code")
    code_cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    code_cell["execution_count"] = 3
    sys.path.insert(0, str(ROOT / "tools"))
    import notebooks as tool

    try:
        cleaned = tool.clean(dirty)
    finally:
        sys.path.pop(0)
    cell = next(c for c in cleaned["cells"] if c["cell_type"] == "code")
    assert cell["outputs"] == [] and cell["execution_count"] is None
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "notebooks.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
