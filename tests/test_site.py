"""The course site (`make site`, tools/site.py): it builds in quick mode from this checkout, offline, and a real
browser reads every lesson page: no console errors, every picture loaded, every internal link resolves, nothing
fetched from another server, and the still sliders (latentlab.stills) change the picture without a kernel.

The site is built once per test session (every lesson executed once, in quick mode, into a fresh cache) and served
from a local HTTP server, as GitHub Pages would serve it. The browser comes from tools/chromium.py, as for the
JupyterLab test (tests/test_browser.py); without one the browser test is skipped or fails the same way.
"""

import base64
import functools
import html.parser
import importlib.util
import io
import re
import shutil
import threading
import tomllib
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-proxy-server"]  # as tests/test_browser.py


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"latentlab_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _conf():
    """site/conf.py, read as Sphinx reads it"""
    spec = importlib.util.spec_from_file_location("latentlab_site_conf", ROOT / "site" / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """the whole site, built once in quick mode with a fresh cache (so every lesson really executes) -> its folder"""
    pytest.importorskip("myst_nb", reason="the site needs the [site] extra: pip install -e '.[site]'")
    base = tmp_path_factory.mktemp("site")
    out = base / "html"
    tool = _tool("site")
    seconds = tool.build(out, cache=base / "cache")  # the test environment is already offline and quick
    print("\n" + "\n".join(tool.report(out, seconds)))
    return out


@pytest.fixture(scope="session")
def served(site):
    """the site on a local HTTP server -> its base URL; stopped after the session"""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # one line per request would bury the test's own output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


# ---- the built files

def test_every_lesson_and_docs_page_is_built_in_lesson_order(site):
    assert (site / "index.html").is_file(), "the site's root page (site/root/index.html) is missing"
    assert 'url=site/index.html' in (site / "index.html").read_text()
    start = (site / "site" / "index.html").read_text()
    found = re.findall(r'href="\.\./notebooks/([0-9][0-9]_[a-z_]+)\.html"', start)
    assert list(dict.fromkeys(found)) == LESSONS, "the start page's navigation is not the lessons in order"
    for page in ["docs/architecture.html", "docs/benchmarks.html", "docs/benchmarks-pixel-vs-latent.html",
                 "docs/site.html", "README.html", "CONTRIBUTING.html"]:
        assert (site / page).is_file(), f"{page} is not part of the site"


def test_lesson_pages_are_light_and_carry_the_colab_and_binder_buttons(site):
    tool = _tool("site")
    with open(ROOT / "pyproject.toml", "rb") as f:
        repo = tomllib.load(f)["project"]["urls"]["Repository"].removeprefix("https://github.com/")
    for lesson in LESSONS:
        page = site / "notebooks" / f"{lesson}.html"
        text = page.read_text()
        assert tool.page_weight(page) < tool.LIMIT_MB * 1e6, f"{lesson}: {tool.page_weight(page) / 1e6:.1f} MB"
        assert f'href="https://colab.research.google.com/github/{repo}/blob/' in text, f"{lesson}: no Colab button"
        assert f'href="https://mybinder.org/v2/gh/{repo}/' in text, f"{lesson}: no Binder button"
        assert "widget-state+json" not in text, f"{lesson}: the unused widget state was published"
        assert "Traceback (most recent call last)" not in text, f"{lesson}: a cell printed a traceback"
    for lesson, sliders in [("04_latent_channels", 2), ("05_forward_diffusion", 1), ("08_latent_diffusion", 1),
                            ("09_stable_diffusion_latents", 1)]:
        text = (site / "notebooks" / f"{lesson}.html").read_text()
        assert text.count('class="latentlab-still"') == sliders, f"{lesson} should show {sliders} still slider(s)"


def test_the_pages_workflow_is_valid_and_publishes_this_build():
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the [site] extra (myst-parser)")
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "push" in on and "workflow_dispatch" in on
    steps = [step for job in workflow["jobs"].values() for step in job.get("steps", [])]
    runs = " ".join(step.get("run", "") for step in steps)
    uses = [step.get("uses", "") for step in steps]
    assert "make site" in runs
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert workflow["permissions"]["pages"] == "write" and workflow["permissions"]["id-token"] == "write"


# ---- in a real browser

@pytest.fixture(scope="session")
def chromium() -> Path:
    path, why = _tool("chromium").find_chromium()
    if path is None:
        if shutil.which("apt-get"):
            pytest.fail(f"{why}; `make test` installs Debian's chromium first (python tools/chromium.py --install).")
        pytest.skip(f"no browser for the site test: {why}")
    return path


class _Ids(html.parser.HTMLParser):
    """every id= in a page"""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for name, value in attrs if name == "id" and value)


def _target_ids(site: Path, path: str) -> set[str] | None:
    """the ids of the page at a site path, or None when there is no such file"""
    file = site / urllib.parse.unquote(path).lstrip("/")
    file = file / "index.html" if file.is_dir() else file
    if not file.is_file():
        return None
    parser = _Ids()
    parser.feed(file.read_text(errors="replace")) if file.suffix == ".html" else None
    return parser.ids


def _pixels(data_uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))).convert("RGB"), np.int16)


def _move_still(page, still, track: int) -> float:
    """move one range input of a still slider by the keyboard -> mean pixel change of its picture (0-255)"""
    img = still.locator("img.latentlab-still-frame")
    before, caption = img.get_attribute("src"), still.locator(".latentlab-still-caption").inner_text()
    slider = still.locator("input[type=range]").nth(track)
    slider.focus()
    at_end = slider.evaluate("(el) => el.value === el.max")  # a sampling still starts at its last step
    page.keyboard.press("Home" if at_end else "End")  # the far end of the range: an input event, as a drag gives
    page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle())
    after = img.get_attribute("src")
    assert still.locator(".latentlab-still-caption").inner_text() != caption, "the caption did not follow the slider"
    return float(np.abs(_pixels(after) - _pixels(before)).mean()) if after != before else 0.0


def test_every_lesson_page_reads_in_chromium(chromium, site, served, tmp_path):
    from playwright.sync_api import sync_playwright
    mathjax = _conf().mathjax_path  # the one script a page may fetch from elsewhere: Sphinx's maths

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        here = {"lesson": ""}
        page.on("console", lambda m: m.type == "error" and problems.append(f"{here['lesson']}: console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"{here['lesson']}: script error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"{here['lesson']}: failed to load {r.url}"))
        outside: list[str] = []

        def only_local(route):
            if route.request.url.startswith(served) or route.request.url.startswith("data:"):
                return route.continue_()
            if route.request.url == mathjax:  # online readers get typeset maths; offline the TeX stays readable
                return route.fulfill(status=200, content_type="text/javascript", body="")
            outside.append(route.request.url)
            return route.abort()

        page.route("**/*", only_local)
        try:
            for lesson in LESSONS:
                here["lesson"] = lesson
                page.goto(f"{served}/notebooks/{lesson}.html", wait_until="load")
                images = page.evaluate("() => [...document.images].map(i => [i.currentSrc.slice(0, 80), "
                                       "i.complete && i.naturalWidth > 0])")
                broken = [src for src, ok in images if not ok]
                assert not broken, f"{lesson}: pictures that did not load: {broken}"
                if lesson != "00_welcome":
                    assert len(images) >= 2, f"{lesson} shows {len(images)} pictures: are its outputs missing?"
                links = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
                for link in links:
                    if not link.startswith(served):
                        continue  # Colab, Binder, papers: the outside world, not this site
                    path, _, fragment = link.removeprefix(served).partition("#")
                    ids = _target_ids(site, path.split("?")[0])
                    if ids is None:
                        problems.append(f"{lesson}: link to a missing page {path}")
                    elif fragment and urllib.parse.unquote(fragment) not in ids:
                        problems.append(f"{lesson}: link to a missing anchor {path}#{fragment}")

            # the still sliders move without a kernel: each changes its picture
            for lesson, index, track in [("04_latent_channels", 0, 2), ("04_latent_channels", 1, 0),
                                         ("05_forward_diffusion", 0, 0), ("08_latent_diffusion", 0, 0)]:
                here["lesson"] = lesson
                page.goto(f"{served}/notebooks/{lesson}.html", wait_until="load")
                still = page.locator(".latentlab-still").nth(index)
                still.scroll_into_view_if_needed()
                change = _move_still(page, still, track)
                assert change > 2.0, f"{lesson}: still slider {index} barely changed its picture ({change:.2f}/255)"
        except BaseException:
            page.screenshot(path=str(tmp_path / "site-failure.png"), full_page=True)
            print(f"\nscreenshot of the failure: {tmp_path / 'site-failure.png'}")
            raise
        finally:
            browser.close()
    assert not outside, f"the site asked other servers for {sorted(set(outside))[:5]}: it should read offline"
    assert not problems, "\n".join(problems[:20])
