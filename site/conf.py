"""Sphinx configuration of the course site (`make site`): every lesson executed, with its outputs, and the docs pages.

The source folder is the repository root (`sphinx-build -c site . build/site`), so the lessons, README.md and
docs/*.md are read where they live and their relative links keep working. myst-nb executes each lesson and keeps
its outputs in a jupyter-cache, so a rebuild re-executes only the lessons whose code changed; the cache is kept per
mode (full or quick) and per version of the package, so a change in latentlab/ re-executes every lesson.
"""

import hashlib
import tomllib
from pathlib import Path

from latentlab import mode

ROOT = Path(__file__).resolve().parent.parent

with open(ROOT / "pyproject.toml", "rb") as f:
    _project = tomllib.load(f)["project"]


def _package_hash() -> str:
    """the package's code and shipped weights, hashed: a cache made by other code is never reused"""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "latentlab").rglob("*")):
        if path.suffix in {".py", ".json", ".safetensors"} and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()[:12]


project = "latentlab"
author = "the latentlab authors"
release = version = _project["version"]
html_title = "latentlab: the latent space of Stable Diffusion, built by hand and measured"
html_baseurl = _project["urls"]["Documentation"]  # the site's address, written once in pyproject.toml

extensions = ["myst_nb"]
root_doc = "site/index"
include_patterns = ["site/index.md", "notebooks/[0-9][0-9]_*.ipynb", "docs/*.md", "README.md", "CONTRIBUTING.md"]
exclude_patterns = [".venv", "build", ".git", "**/.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]  # docs pages start at '#' and some skip a level; not worth a warning

# execution: every lesson from a fresh kernel, cached; a failing cell fails the build
nb_execution_mode = "cache"
nb_execution_cache_path = str(ROOT / "build" / "site-cache" / f"{'quick' if mode.quick() else 'full'}-{_package_hash()}")
nb_execution_timeout = 1800  # a whole lesson 08 in full mode takes ~8 min on a 2-core CPU
nb_execution_raise_on_error = True
nb_kernel_rgx_aliases = {".*": "python3"}
nb_merge_streams = True

# the live widgets need a kernel: never render their views (nor fetch the widget manager from a CDN); an output that
# also carries a still version (latentlab.stills) shows that instead, a tqdm bar shows its last line of text
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath"]
myst_update_mathjax = False  # MathJax's defaults find $...$ already; an edited mathjax4_config forces a full re-read
# maths is typeset by MathJax from its CDN, the one thing a page loads from elsewhere; offline, the TeX stays readable
mathjax_path = "https://cdn.jsdelivr.net/npm/mathjax@4/tex-mml-chtml.js"
myst_heading_anchors = 3

html_theme = "alabaster"
html_static_path = ["_static"]  # paths here are relative to this folder, site/
html_extra_path = ["root"]  # index.html at the top of the site, which opens site/index.html
html_theme_options = {"description": "A notebook course on the latent space of latent diffusion models",
                      "fixed_sidebar": True, "page_width": "1180px", "sidebar_width": "260px"}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_show_sourcelink = False
html_copy_source = False


def _offline_buttons(app, doctree, docname):
    """the notebooks' Colab / Binder badges are remote pictures: on the site they become text buttons (same links),
    so every page reads offline and loads nothing from another server"""
    from docutils import nodes  # Sphinx's own document tree, imported where it is used

    for image in list(doctree.findall(nodes.image)):
        if "://" in image.get("uri", ""):
            button = nodes.inline(text=image.get("alt", "link"), classes=["latentlab-button"])
            image.replace_self(button)


def _drop_widget_state(app, pagename, templatename, context, doctree):
    """the widgets' saved state is hundreds of kB per lesson that nothing on the site reads (no widget manager)"""
    getattr(app.env, "nb_metadata", {}).get(pagename, {}).get("js_files", {}).pop("ipywidgets_state", None)


def setup(app):
    app.add_css_file("site.css")  # here, not html_css_files, which Sphinx sees as changed on every run (a full re-read)
    app.connect("doctree-resolved", _offline_buttons)
    app.connect("html-page-context", _drop_widget_state, priority=100)  # before myst-nb adds the page's scripts
