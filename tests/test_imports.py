"""latentlab's imports go one way: no ring of modules that import each other, no import that climbs to a later layer
of docs/architecture.md, imports at the top unless a comment says why; each module names its lessons and stays
short, or says why not."""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "latentlab"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
_spec = importlib.util.spec_from_file_location("latentlab_tools_course_map", ROOT / "tools" / "course_map.py")
course_map = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # registered first: it has a dataclass
_spec.loader.exec_module(course_map)

MAX_LINES = 300  # a module a learner reads in one sitting; a longer one says why in its docstring


def _package(root: Path, files: dict[str, str]) -> Path:
    """a throwaway package `pkg` under root with the given modules"""
    pkg = root / "pkg"
    for name, source in {"__init__.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(source)
    return pkg


def test_latentlab_has_no_import_cycle():
    ring = course_map.find_cycle(course_map.import_graph())
    assert ring is None, f"these modules import each other in a ring: {' -> '.join(ring or [])}"


def test_a_cycle_is_found_also_through_an_import_inside_a_function_or_a_relative_one(tmp_path):
    pkg = _package(tmp_path, {
        "a.py": "from pkg import b\n",
        "b.py": "from pkg.c import helper\n",
        "c.py": "def helper():\n    from pkg.a import thing\n    return thing\n",
        "d.py": "from . import e\n",
        "e.py": "import pkg.d\n",
    })
    graph = course_map.import_graph(pkg)
    assert graph["c"] == {"a"} and graph["d"] == {"e"} and graph["e"] == {"d"}
    assert course_map.find_cycle(graph) == ["a", "b", "c", "a"]
    (pkg / "c.py").write_text("def helper():\n    return 1\n")  # the near miss: a chain, no ring
    graph = course_map.import_graph(pkg)
    assert course_map.find_cycle(graph) == ["d", "e", "d"]
    (pkg / "e.py").write_text("import pkgx.d\n")
    assert course_map.find_cycle(course_map.import_graph(pkg)) is None


def test_a_package_importing_its_own_submodule_is_no_cycle(tmp_path):
    """`from pkg.sub import Thing` inside pkg/sub/one.py names the package, which does not import one back"""
    pkg = _package(tmp_path, {"sub/__init__.py": "", "sub/one.py": "from pkg.sub import Thing\n",
                              "user.py": "from pkg.sub import Thing, one\n"})
    graph = course_map.import_graph(pkg)
    assert graph["sub.one"] == {"sub"} and graph["user"] == {"sub", "sub.one"}
    assert course_map.find_cycle(graph) is None


def test_imports_never_climb_to_a_later_layer():
    layer_of = course_map.layers((ROOT / "docs" / "architecture.md").read_text())
    assert course_map.upward_imports(course_map.import_graph(), layer_of) == []


def test_a_climbing_import_is_caught():
    page = "### 1. Base\n\n- `errors.py` — x\n\n### 2. Models\n\n- `vae.py` — x\n- `exercises/` — x\n"
    layer_of = course_map.layers(page)
    assert layer_of == {"errors": 1, "vae": 2, "exercises": 2}
    assert course_map.upward_imports({"vae": {"errors"}, "exercises.lesson03": {"vae"}}, layer_of) == []
    assert course_map.upward_imports({"errors": {"vae"}}, layer_of) == ["errors (layer 1) imports vae (layer 2)"]
    assert course_map.upward_imports({"new": {"errors"}}, layer_of) == ["new has no layer on the architecture page"]


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_names_the_lessons_it_serves(path):
    assert "lesson" in _docstring(path).lower(), f"{path.name}'s docstring should name the lesson(s) it serves"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_over_300_lines_says_why(path):
    lines = len(path.read_text().splitlines())
    doc = _docstring(path).lower()
    assert lines <= MAX_LINES or "longer" in doc or "300 lines" in doc, (
        f"{path.name} has {lines} lines: split it, or say in its docstring why it is one module")


def _imports_inside_functions(source: str) -> list[ast.stmt]:
    found = []

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and inside:
                found.append(child)
            visit(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))

    visit(ast.parse(source), False)
    return found


def _unexplained_imports(source: str) -> list[str]:
    """imports inside a function or class with no comment on their line or the line above, and whose package the
    module's docstring does not name as imported late"""
    lines, doc = source.splitlines(), ast.get_docstring(ast.parse(source)) or ""
    wrong = []
    for node in _imports_inside_functions(source):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        commented = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
        in_docstring = "import" in doc and all(f"`{n.split('.')[0]}`" in doc for n in names)
        if not (commented or in_docstring):
            wrong.append(f"line {node.lineno}: {lines[node.lineno - 1].strip()}")
    return wrong


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_are_at_the_top_unless_a_comment_says_why(path):
    wrong = _unexplained_imports(path.read_text())
    assert wrong == [], f"{path.name}: move these imports to the top, or say why they are late: {wrong}"


def test_an_unexplained_late_import_is_caught():
    late = '"""m."""\n\n\ndef f():\n    import json\n    return json\n'
    assert _unexplained_imports(late) == ["line 5: import json"]
    assert _unexplained_imports(late.replace("import json\n", "import json  # slow to import\n")) == []
    assert _unexplained_imports(late.replace("    import json\n", "    # only here\n    import json\n")) == []
    assert _unexplained_imports(late.replace('"""m."""', '"""m. `json` is imported inside f."""')) == []
    assert _unexplained_imports(late.replace('"""m."""', '"""m. json is imported inside f."""')) != []
    assert _unexplained_imports('"""m."""\nif True:\n    import json\n') == []  # top level, only conditional
