"""Build the course site: every lesson executed with its outputs (cached), and the docs pages -> build/site.

    python tools/site.py               `make site`: full mode, the real lessons (LATENTLAB_QUICK=1: a quick build)
    python tools/site.py --out DIR     build somewhere else (the tests build into a temporary folder)
    ... --cache DIR                    the jupyter-cache of executed lessons (default: build/site-cache/<mode>-<hash
                                       of the package>, so only a changed lesson re-executes, and any change in
                                       latentlab/ re-executes them all)

Sphinx with myst-nb (configuration: site/conf.py), warnings fail the build. Afterwards it prints the build time,
the site's size, and each lesson page's weight: its HTML plus the pictures it shows. Run it offline as `make site`
does (the Makefile's OFFLINE settings): the lessons never need the network.
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 4.0  # the most a lesson page may weigh with its pictures: a phone on a slow line still opens it


def page_weight(page: Path) -> int:
    """bytes of one HTML page plus every local picture it shows (data: pictures are inside the HTML already)"""
    text = page.read_text(errors="replace")
    pictures = {page.parent / src for src in re.findall(r'<img[^>]+src="([^"#?]+)"', text)
                if "://" not in src and not src.startswith("data:")}
    return page.stat().st_size + sum(p.stat().st_size for p in pictures if p.is_file())


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(out: Path, cache: Path | None = None) -> float:
    """sphinx-build of the whole site into `out` -> seconds taken (raises CalledProcessError when it fails)"""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-c", str(ROOT / "site"),
               "-d", str(out.parent / f"{out.name}-doctrees"), str(ROOT), str(out)]
    if cache is not None:
        command[3:3] = ["-D", f"nb_execution_cache_path={cache}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - start


def report(out: Path, seconds: float) -> list[str]:
    """the lines printed after a build: time, size, each lesson page's weight, any page over the limit"""
    lines = [f"built {out} in {seconds:.0f} s: {folder_size(out) / 1e6:.1f} MB in all"]
    for page in sorted((out / "notebooks").glob("*.html")):
        mb = page_weight(page) / 1e6
        lines.append(f"  {page.stem:<30} {mb:5.2f} MB" + (f"  over {LIMIT_MB} MB" if mb > LIMIT_MB else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="the site's folder")
    parser.add_argument("--cache", type=Path, help="the jupyter-cache folder of executed lessons")
    args = parser.parse_args(argv)
    try:
        seconds = build(args.out.resolve(), args.cache)
    except subprocess.CalledProcessError:
        print("site.py: the site did not build (Sphinx's messages are above).", file=sys.stderr)
        return 1
    lines = report(args.out.resolve(), seconds)
    print("\n".join(lines))
    print(f"open {args.out / 'index.html'}")
    return 1 if any("over" in line for line in lines[1:]) else 0


if __name__ == "__main__":
    sys.exit(main())
