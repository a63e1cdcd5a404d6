"""The map inside the repository (tools/course_map.py): the README's and the architecture page's lesson tables match
what each notebook really imports, every module is on the architecture page, every test file is named for what
it tests, and nothing points at a file outside the repository."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_spec = importlib.util.spec_from_file_location("latentlab_tools_course_map", ROOT / "tools" / "course_map.py")
course_map = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # registered first: it has a dataclass
_spec.loader.exec_module(course_map)

# test files that check the repository as a whole rather than one module of latentlab
# (site: the course site, built by tools/site.py from every lesson and docs/, read in a real browser)
REPOSITORY_CHECKS = {"browser", "course_map", "imports", "install_pins", "lessons_prove", "make_lab", "notebook_hygiene",
                     "offline", "site"}


def _code(source: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "source": source, "outputs": [], "execution_count": None}


def _notebook(path: Path, *cells: dict) -> Path:
    path.write_text(json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 4}))
    return path


def test_only_import_statements_count(tmp_path):
    """imports at any depth count, magics don't break the parse; prose, strings and look-alike packages don't count"""
    path = _notebook(
        tmp_path / "03_probe.ipynb",
        {"cell_type": "markdown", "metadata": {}, "source": "from latentlab import sd  # a sentence, not code"},
        _code('import importlib.util\n\nif importlib.util.find_spec("latentlab") is None:\n    %pip install latentlab'),
        _code("from latentlab import data, images, __version__\nfrom latentlab.vae import VAE"),
        _code("def f():\n    import latentlab.unet as u\n    from latentlab.exercises import lesson03\n    return u"),
        _code("text = 'from latentlab import bench'\nimport latentlabx\nfrom latentlab_extra import viz\n!ls"),
    )
    assert course_map.notebook_modules(path) == ["data", "exercises", "images", "unet", "vae"]


def _readme_rows() -> dict[str, list[str]]:
    """notebook file name -> the module names in the last column of its README row"""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if m := course_map.NOTEBOOK_LINK.search(line):
            rows[m.group(1)] = re.findall(r"\[`([a-z_]+)`\]", line.rstrip(" |").rsplit(" | ", 1)[-1])
    return rows


def test_readme_lesson_table_lists_the_modules_each_notebook_imports():
    rows = _readme_rows()
    assert sorted(rows) == [p.name for p in NOTEBOOKS], "the README's lesson table and notebooks/ list different lessons"
    for path in NOTEBOOKS:
        assert rows[path.name] == course_map.notebook_modules(path), (
            f"README's row for {path.name} differs from its imports: run `make clean-notebooks`")
    assert "pixel_vs_latent" in rows["07_pixel_vs_latent.ipynb"] and "sd" in rows["09_stable_diffusion_latents.ipynb"]


def test_the_tables_are_current_and_the_check_command_says_so():
    assert course_map.stale() == []
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "course_map.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_a_stale_table_is_caught_and_rewritten_without_losing_the_descriptions(tmp_path, monkeypatch):
    readme, page = tmp_path / "README.md", tmp_path / "architecture.md"
    shutil.copy(ROOT / "README.md", readme)
    shutil.copy(ROOT / "docs" / "architecture.md", page)
    monkeypatch.setattr(course_map, "README", readme)
    monkeypatch.setattr(course_map, "ARCHITECTURE", page)
    monkeypatch.setattr(course_map, "ROOT", tmp_path)
    assert course_map.stale() == []  # the control: an untouched copy is current

    text = readme.read_text()
    row = next(line for line in text.splitlines() if "(notebooks/07_pixel_vs_latent.ipynb)" in line)
    three_columns = row.rsplit(" | ", 1)[0] + " |"  # the modules column lost
    readme.write_text(text.replace(row, three_columns))
    page.write_text(page.read_text().replace("[`sd`](../latentlab/sd.py), ", ""))
    assert course_map.stale() == [readme, page]
    assert course_map.main(["--check"]) == 1

    assert course_map.main([]) == 0
    assert readme.read_text() == (ROOT / "README.md").read_text()
    assert page.read_text() == (ROOT / "docs" / "architecture.md").read_text()


def test_a_new_notebook_gets_a_row_and_a_removed_one_loses_it():
    middle = course_map._between((ROOT / "README.md").read_text(), ROOT / "README.md")[1]
    found = course_map.lessons()
    extra = course_map.Lesson(ROOT / "notebooks" / "10_new_lesson.ipynb", ["latents", "vae"])
    table = course_map.readme_table(middle, [*found[1:], extra])  # 00 gone, 10 new
    assert "00_welcome.ipynb" not in table
    assert table.rstrip().endswith("| 10 | [new lesson](notebooks/10_new_lesson.ipynb) | | "
                                   "[`latents`](latentlab/latents.py), [`vae`](latentlab/vae.py) |")


def test_every_module_is_on_the_architecture_page_and_nothing_else_is():
    listed = course_map.layers((ROOT / "docs" / "architecture.md").read_text())
    modules = {course_map.top(m) for m in course_map.package_modules()}
    assert modules - listed.keys() == set(), "give each new module its line in docs/architecture.md, in its layer"
    assert listed.keys() - modules == set(), "docs/architecture.md lists modules that no longer exist"


def test_a_module_missing_from_the_page_is_noticed(tmp_path):
    (tmp_path / "pkg").mkdir()
    for name in ("__init__", "a", "b"):
        (tmp_path / "pkg" / f"{name}.py").write_text('"""x"""\n')
    page = "## The modules\n\n### 1. Base\n\n- `a.py` — a\n\n## Weights\n\n- `b.py` — not a layer's item\n"
    listed = course_map.layers(page)
    assert listed == {"a": 1}
    assert set(course_map.package_modules(tmp_path / "pkg")) - listed.keys() == {"b"}


@pytest.mark.parametrize("path", sorted((ROOT / "tests").glob("test_*.py")), ids=lambda p: p.name)
def test_each_test_file_is_named_for_the_module_it_tests(path):
    modules = {course_map.top(m) for m in course_map.package_modules()}
    name = path.stem.removeprefix("test_")
    assert name in modules | REPOSITORY_CHECKS, (
        f"{path.name} names no latentlab module: put its tests in test_<module>.py of the module they test")


def test_nothing_points_outside_the_repository():
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    tracked = listing.stdout.split() if listing.returncode == 0 else []
    if not tracked:
        pytest.skip("not a git checkout: no list of tracked files")
    outside = re.compile(r"\.\./shared|shared/STYLE|shared/COURSE|COURSE\.md|STYLE\.md")
    found = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".safetensors", ".png", ".jpg"} or name == "tests/test_course_map.py" or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if outside.search(line):
                found.append(f"{name}:{n}: {line.strip()[:80]}")
    assert found == [], "these lines point at files outside the repository:\n" + "\n".join(found)
