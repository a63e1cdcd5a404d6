"""The map of the repository, read from the code itself: which latentlab modules each lesson imports, and which
modules each module imports.

    python tools/course_map.py           rewrite the generated tables in README.md and docs/architecture.md
    python tools/course_map.py --check   exit 1 (naming the file) if a table no longer matches the notebooks
    python tools/course_map.py --graph   print every latentlab module with the latentlab modules it imports

Only import statements count (`from latentlab import data`, `from latentlab.vae import VAE`, `import latentlab.x`),
never a module named in prose, so the tables say what a lesson really runs. `make clean-notebooks` rewrites the
tables too (tools/notebooks.py calls this), and `make test` fails on a stale one.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "latentlab"
NOTEBOOKS = ROOT / "notebooks"
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
LESSONS_BEGIN, LESSONS_END = "<!-- course-map: lessons -->", "<!-- /course-map: lessons -->"
NOTEBOOK_LINK = re.compile(r"\(notebooks/(\d\d_[^)]*\.ipynb)\)")
LAYER_HEADING = re.compile(r"^### (\d+)\. ")
LAYER_ITEM = re.compile(r"^- `([a-z_]+)(?:\.py|/)`")


# ---- what the package holds and what imports what


def package_modules(package: Path = PACKAGE) -> list[str]:
    """every module of the package, dotted below it: "vae", "exercises", "exercises.lesson02", "__main__" ..."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        names.append(".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts))
    return [n for n in names if n]  # "" is the package itself


def _without_magics(source: str) -> str:
    """IPython's %magic and !shell lines -> `pass` at the same indent, so a notebook cell parses as Python"""
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in source.splitlines())


def imported_modules(source: str, modules: list[str], here: str = "", package: str = "latentlab") -> set[str]:
    """Python source -> the package's modules it imports (dotted below the package), at any depth of the code"""
    known, found = set(modules), set()
    for node in ast.walk(ast.parse(_without_magics(source))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(package + "."):
                    found.add(alias.name.removeprefix(package + "."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: counted from `here`, the importing module's dotted name
                base = here.split(".")[: -node.level]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module == package or (node.module or "").startswith(package + "."):
                target = node.module.removeprefix(package).lstrip(".")
            else:
                continue
            for alias in node.names:
                child = f"{target}.{alias.name}" if target else alias.name
                if child in known:  # `from latentlab import viz`: the module viz
                    found.add(child)
                elif target:  # `from latentlab.vae import VAE`: the module vae
                    found.add(target)
    return {m for m in found if m in known}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (top of the file or inside a function: every edge counts)"""
    modules = package_modules(package)
    graph = {}
    for name in modules:
        path = package / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = package / name.replace(".", "/") / "__init__.py"
        here = f"{name}.__init__" if path.name == "__init__.py" else name  # what `from . import` counts from
        graph[name] = imported_modules(path.read_text(), modules, here=here, package=package.name) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """a list of modules [a, b, ..., a] that import each other in a ring, or None"""
    state: dict[str, str] = {}  # "open" while on the path being walked, "done" after

    def walk(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (ring := walk(nxt, [*path, nxt])):
                return ring
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (ring := walk(start, [start])):
            return ring
    return None


def top(module: str) -> str:
    """a dotted module -> the entry the architecture page lists it under ("exercises.lesson02" -> "exercises")"""
    return module.split(".")[0]


def layers(page: str) -> dict[str, int]:
    """the architecture page's layers: each `- `name.py`` (or `name/`) item under `### N. ...` -> N"""
    found, current = {}, None
    for line in page.splitlines():
        if m := LAYER_HEADING.match(line):
            current = int(m.group(1))
        elif line.startswith("## "):
            current = None
        elif current is not None and (m := LAYER_ITEM.match(line)):
            found[m.group(1)] = current
    return found


def upward_imports(graph: dict[str, set[str]], layer_of: dict[str, int]) -> list[str]:
    """imports that climb: a module importing from a later layer than its own (a module with no layer is one too)"""
    wrong = []
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            a, b = layer_of.get(top(module)), layer_of.get(top(dep))
            if a is None or b is None:
                wrong.append(f"{top(module) if a is None else top(dep)} has no layer on the architecture page")
            elif b > a:
                wrong.append(f"{module} (layer {a}) imports {dep} (layer {b})")
    return sorted(set(wrong))


# ---- the lessons


@dataclass
class Lesson:
    path: Path
    modules: list[str]  # top-level latentlab modules the notebook imports, sorted

    @property
    def number(self) -> str:
        return self.path.name[:2]


def notebook_modules(path: Path, modules: list[str] | None = None) -> list[str]:
    """a notebook -> the latentlab modules its code cells import (top level: `exercises`, not `exercises.lesson02`)"""
    modules = package_modules() if modules is None else modules
    found: set[str] = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            found |= {top(m) for m in imported_modules(src, modules)}
    return sorted(found)


def lessons(folder: Path = NOTEBOOKS) -> list[Lesson]:
    modules = package_modules()
    return [Lesson(p, notebook_modules(p, modules)) for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))]


def module_links(names: list[str], prefix: str) -> str:
    """["device", "exercises"] -> [`device`](latentlab/device.py), [`exercises`](latentlab/exercises/)"""
    def target(name: str) -> str:
        return f"{prefix}latentlab/{name}/" if (PACKAGE / name).is_dir() else f"{prefix}latentlab/{name}.py"
    return ", ".join(f"[`{n}`]({target(n)})" for n in names)


def _between(text: str, file: Path) -> tuple[str, str, str]:
    """text -> (before, the generated part, after) around the course-map markers"""
    if LESSONS_BEGIN not in text or LESSONS_END not in text:
        raise SystemExit(f"{file} lost its course-map markers ({LESSONS_BEGIN} ... {LESSONS_END}); put them back "
                         "around the lesson table.")
    before, rest = text.split(LESSONS_BEGIN, 1)
    middle, after = rest.split(LESSONS_END, 1)
    return before, middle, after


def readme_table(middle: str, found: list[Lesson]) -> str:
    """the README's lesson table with its last column (the modules) set from the notebooks; other cells kept"""
    rows, by_name = [], {lesson.path.name: lesson for lesson in found}
    seen, lines = set(), middle.strip("\n").splitlines()
    width = lines[0].strip().strip("|").count(" | ") + 1  # the header's columns, the modules last
    for line in lines:
        m = NOTEBOOK_LINK.search(line)
        if not m:  # the header and the |---| line
            rows.append(line)
            continue
        if m.group(1) not in by_name:  # the notebook is gone
            continue
        cells = line.strip().strip("|").split(" | ")
        cells += [""] * (width - len(cells))  # a row written without the modules column gets one
        cells[-1] = module_links(by_name[m.group(1)].modules, prefix="")
        rows.append("| " + " | ".join(c.strip() for c in cells) + " |")
        seen.add(m.group(1))
    for lesson in found:  # a new notebook gets a row to describe
        if lesson.path.name not in seen:
            rows.append(f"| {lesson.number} | [{lesson.path.stem[3:].replace('_', ' ')}](notebooks/{lesson.path.name})"
                        f" | | {module_links(lesson.modules, prefix='')} |")
    rows[2:] = sorted(rows[2:], key=lambda r: NOTEBOOK_LINK.search(r).group(1))
    return "\n" + "\n".join(rows) + "\n"


def architecture_table(found: list[Lesson]) -> str:
    """the architecture page's lesson -> modules table, wholly generated"""
    rows = ["| lesson | latentlab modules its notebook imports |", "|---|---|"]
    rows += [f"| [{lesson.path.stem}](../notebooks/{lesson.path.name}) | {module_links(lesson.modules, prefix='../')} |"
             for lesson in found]
    used = {m for lesson in found for m in lesson.modules}
    unused = sorted({top(m) for m in package_modules()} - used)
    rows += ["", "No lesson imports " + ", ".join(f"`{m}`" for m in unused) + ": the command line, the jobs behind "
             "it and the modules the lessons reach through others (the exercises through `checks`)."]
    return "\n" + "\n".join(rows) + "\n"


def rebuild(found: list[Lesson] | None = None) -> dict[Path, str]:
    """the text README.md and docs/architecture.md should have"""
    found = lessons() if found is None else found
    out = {}
    for file, make in ((README, lambda mid: readme_table(mid, found)), (ARCHITECTURE, lambda mid: architecture_table(found))):
        text = file.read_text()
        before, middle, after = _between(text, file)
        out[file] = before + LESSONS_BEGIN + make(middle) + LESSONS_END + after
    return out


def stale() -> list[Path]:
    return [file for file, text in rebuild().items() if file.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report tables that differ from the notebooks")
    parser.add_argument("--graph", action="store_true", help="print which latentlab modules each module imports")
    args = parser.parse_args(argv)
    if args.graph:
        for module, deps in sorted(import_graph().items()):
            print(f"{module:<22} {', '.join(sorted(deps)) or '-'}")
        return 0
    wanted = rebuild()
    changed = [file for file, text in wanted.items() if file.read_text() != text]
    if args.check:
        for file in changed:
            print(f"{file.relative_to(ROOT)}: its lesson table no longer matches the notebooks' imports: run "
                  "`python tools/course_map.py` (or `make clean-notebooks`).", file=sys.stderr)
        return 1 if changed else 0
    for file in changed:
        file.write_text(wanted[file])
        print(f"updated the lesson table in {file.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
