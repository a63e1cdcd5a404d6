"""Keep every lesson notebook clean and uniform: badges, the Colab install cell, navigation, no outputs.

    python tools/notebooks.py           rewrite notebooks/*.ipynb in place
    python tools/notebooks.py --check   exit 1 (naming the notebooks) if any file would change
                                        (for notebooks/ itself, also the lesson tables: tools/course_map.py)
    ... --dir DIR                       the same for another folder of lessons (e.g. a copy)

The repository address and the version are read from pyproject.toml ([project.urls] Repository, [project]
version), the one place each is written. The badges and the Colab install cell point at the tag `v<version>`, the
release this notebook was written for (the README's release step makes the tag), so a notebook opened from a badge
installs the package it was written with, not whatever the default branch holds that day.
"""

import argparse
import json
import sys
import tomllib
from pathlib import Path

import course_map  # tools/course_map.py, beside this file: the lesson tables in README.md and docs/architecture.md

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
HEADER, SETUP, NAV = "latentlab-header", "latentlab-setup", "latentlab-nav"


def repo_url() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")


def release_ref() -> str:
    """the git tag of the release these notebooks belong to: v + pyproject.toml's version"""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return "v" + tomllib.load(f)["project"]["version"]


def title_of(nb: dict, path: Path) -> str:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and HEADER not in cell.get("metadata", {}).get("tags", []):
            for line in _source(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem.replace("_", " ")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _cell(kind: str, source: str, tag: str) -> dict:
    cell = {"cell_type": kind, "metadata": {"tags": [tag]}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def header_cell(path: Path, url: str, ref: str) -> dict:
    gh = url.removeprefix("https://github.com/")
    rel = f"notebooks/{path.name}"
    colab = f"https://colab.research.google.com/github/{gh}/blob/{ref}/{rel}"
    binder = f"https://mybinder.org/v2/gh/{gh}/{ref}?urlpath=lab/tree/{rel}"
    return _cell(
        "markdown",
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
        f"[![Launch Binder](https://mybinder.org/badge_logo.svg)]({binder})",
        HEADER,
    )


def setup_cell(url: str, ref: str) -> dict:
    return _cell(
        "code",
        f"# On Colab (or any Python without the course), install latentlab {ref}, the release this notebook was\n"
        "# written for; torch is left as it is.\n"
        "import importlib.util\n"
        "\n"
        'if importlib.util.find_spec("latentlab") is None:\n'
        f'    %pip install --quiet "latentlab @ git+{url}@{ref}"',
        SETUP,
    )


def nav_cell(paths: list[Path], i: int, titles: dict[Path, str]) -> dict:
    parts = []
    if i > 0:
        parts.append(f"← previous: [{titles[paths[i - 1]]}]({paths[i - 1].name})")
    if i + 1 < len(paths):
        parts.append(f"next: [{titles[paths[i + 1]]}]({paths[i + 1].name}) →")
    else:
        parts.append("this is the last lesson: back to the [start](00_welcome.ipynb)")
    return _cell("markdown", "---\n" + " | ".join(parts), NAV)


def clean(nb: dict) -> dict:
    """strip outputs, execution counts, widget state and per-cell run metadata; set the kernelspec"""
    for cell in nb["cells"]:
        cell["source"] = _source(cell)
        meta = {k: v for k, v in cell.get("metadata", {}).items() if k in ("tags",)}
        cell["metadata"] = meta
        cell.pop("id", None)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            cell.pop("attachments", None)
    nb["metadata"] = {
        "kernelspec": KERNELSPEC,
        "language_info": {"name": "python"},
    }
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    return nb


def rebuild(paths: list[Path]) -> dict[Path, str]:
    """the text each notebook should have"""
    url, ref = repo_url(), release_ref()
    notebooks = {p: json.loads(p.read_text()) for p in paths}
    titles = {p: title_of(nb, p) for p, nb in notebooks.items()}
    out = {}
    for i, path in enumerate(paths):
        nb = clean(notebooks[path])
        body = [c for c in nb["cells"] if not {HEADER, SETUP, NAV} & set(c["metadata"].get("tags", []))]
        nb["cells"] = [header_cell(path, url, ref), *body[:1], setup_cell(url, ref), *body[1:],
                       nav_cell(paths, i, titles)]
        # the lesson's title cell comes first after the badges, the setup cell right after it
        out[path] = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    return out


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that are not clean")
    parser.add_argument("--dir", type=Path, default=NOTEBOOKS, help="the folder of lessons (default: notebooks/)")
    args = parser.parse_args(argv)
    paths = sorted(p.resolve() for p in args.dir.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print(f"no lesson notebooks (NN_*.ipynb) found in {args.dir}", file=sys.stderr)
        return 1
    wanted = rebuild(paths)
    stale = [p for p, text in wanted.items() if p.read_text() != text]
    # the repository's own lessons also keep the README's and the architecture page's lesson tables current
    tables = course_map.main(["--check"] if args.check else []) if args.dir.resolve() == NOTEBOOKS else 0
    if args.check:
        for p in stale:
            print(f"{_shown(p)} is not clean (outputs, widget state, badges, install cell or navigation): "
                  "run `python tools/notebooks.py`.", file=sys.stderr)
        return 1 if stale or tables else 0
    for p in stale:
        p.write_text(wanted[p])
        print(f"cleaned {_shown(p)}")
    return tables


if __name__ == "__main__":
    sys.exit(main())
