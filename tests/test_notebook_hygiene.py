"""Notebooks are committed clean: no outputs, counts or widget state; kernelspec set; badges and navigation current."""

import json
import re
import shutil
import subprocess
import sys
import tomllib
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


def _check(folder: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "notebooks.py"), *flags, "--dir", str(folder)],
                          capture_output=True, text=True, timeout=120)


def test_check_fails_on_dirty_notebooks_naming_each_and_the_tool_cleans_them(tmp_path):
    """the --check that `make test` runs exits 1 on each kind of dirt, names exactly the dirty files, and rewriting
    gives back the committed files byte for byte"""
    lessons = tmp_path / "lessons"
    shutil.copytree(ROOT / "notebooks", lessons, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    copies = sorted(lessons.glob("[0-9][0-9]_*.ipynb"))
    clean = _check(lessons, "--check")
    assert clean.returncode == 0 and clean.stderr == "", clean.stderr  # the control: an untouched copy passes

    def dirty_outputs(nb):
        cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
        cell["execution_count"] = 3

    def dirty_widget_state(nb):
        nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}

    def unpinned_install(nb):  # what the tool wrote before the pin: the default branch, no ref
        cell = next(c for c in nb["cells"] if "latentlab-setup" in c["metadata"].get("tags", []))
        cell["source"] = re.sub(r"@v[0-9][^\"]*\"", '"', cell["source"])

    def lost_navigation(nb):
        nb["cells"] = [c for c in nb["cells"] if "latentlab-nav" not in c["metadata"].get("tags", [])]

    dirt = [dirty_outputs, dirty_widget_state, unpinned_install, lost_navigation]
    for make_dirty, path in zip(dirt, copies):
        nb = json.loads(path.read_text())
        make_dirty(nb)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")

    out = _check(lessons, "--check")
    assert out.returncode == 1
    named = [line.split(" is not clean")[0] for line in out.stderr.splitlines()]
    assert named == [str(p.resolve()) for p in copies[: len(dirt)]], out.stderr
    assert "run `python tools/notebooks.py`" in out.stderr and "Traceback" not in out.stderr

    assert _check(lessons).returncode == 0
    assert _check(lessons, "--check").returncode == 0
    for path in copies:
        assert path.read_text() == (ROOT / "notebooks" / path.name).read_text(), f"{path.name} was not restored"


def test_badges_and_install_cell_pin_the_release_the_notebook_was_written_for():
    import latentlab

    with open(ROOT / "pyproject.toml", "rb") as f:
        meta = tomllib.load(f)["project"]
    assert latentlab.__version__ == meta["version"], "latentlab.__version__ and pyproject.toml's version differ"
    ref, repo = f"v{meta['version']}", meta["urls"]["Repository"].removeprefix("https://github.com/")
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        header, setup = cells[0]["source"], next(c["source"] for c in cells if "latentlab-setup" in c["metadata"].get("tags", []))
        assert f'git+https://github.com/{repo}@{ref}"' in setup, f"{path.name} installs an unpinned latentlab"
        assert f"github/{repo}/blob/{ref}/notebooks/{path.name}" in header, f"{path.name}: Colab badge not at {ref}"
        assert f"v2/gh/{repo}/{ref}?urlpath=lab/tree/notebooks/{path.name}" in header, f"{path.name}: Binder badge"
