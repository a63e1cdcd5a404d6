"""The install is pinned to what the tests passed with: constraints.txt, binder/requirements.txt, environment.yml and
pyproject.toml agree, torch is never pinned there, and the venv running these tests holds exactly those versions."""

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _lines(path: Path) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def constraints() -> dict[str, Requirement]:
    return {_name(line): Requirement(line) for line in _lines(ROOT / "constraints.txt")}


def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_constraints_pin_every_dependency_but_torch_inside_pyprojects_ranges():
    pins, meta = constraints(), project()
    wanted = [*meta["dependencies"], *(r for extra in meta["optional-dependencies"].values() for r in extra)]
    assert "torch" not in pins, "torch must stay out of constraints.txt: an existing torch is never replaced"
    for requirement in map(Requirement, wanted):
        name = _name(str(requirement))
        if name == "torch":
            continue
        assert name in pins, f"{name} is a dependency in pyproject.toml but has no tested version in constraints.txt"
        (pin,) = pins[name].specifier
        assert pin.operator == "==", f"constraints.txt should give {name} one exact version, not {pin}"
        assert requirement.specifier.contains(pin.version), f"{name}=={pin.version} is outside pyproject's {requirement}"
    # the libraries whose API the course calls closely carry a tested upper bound in pyproject.toml too
    bounded = {_name(r): Requirement(r).specifier for r in meta["dependencies"]}
    for name in ["diffusers", "huggingface-hub", "safetensors", "numpy", "ipywidgets", "scikit-image"]:
        assert any(s.operator == "<" for s in bounded[name]), f"{name} has no upper bound in pyproject.toml"


def test_binder_and_conda_install_the_same_versions():
    pins = {name: str(next(iter(r.specifier))) for name, r in constraints().items()}
    binder = {_name(line): str(Requirement(line).specifier) for line in _lines(ROOT / "binder" / "requirements.txt")
              if not line.startswith("-")}
    assert binder.pop("torch") == "==2.13.0+cpu"  # the Makefile's default torch, CPU-only for Binder
    assert binder == {name: pin for name, pin in pins.items() if name in binder}, "binder/ differs from constraints"
    assert {"diffusers", "jupyterlab", "ipywidgets"} <= binder.keys()
    conda = (ROOT / "environment.yml").read_text()
    assert "- -c constraints.txt" in conda and "- -e .[lab]" in conda
    makefile = (ROOT / "Makefile").read_text()
    assert "TORCH  ?= torch==2.13.0" in makefile and "-c $(CONSTRAINTS)" in makefile


def test_this_venv_holds_the_tested_versions():
    """`make setup` installs with -c constraints.txt; a drifted venv means the file no longer says what was tested"""
    drifted = []
    for name, pin in constraints().items():
        if pin.marker is not None and not Marker(str(pin.marker)).evaluate():
            continue  # e.g. Python 3.10: pyproject's ranges apply instead
        installed = importlib.metadata.version(name)
        if not pin.specifier.contains(installed, prereleases=True):
            drifted.append(f"{name} {installed} (constraints.txt: {pin.specifier})")
    assert not drifted, (f"installed versions differ from constraints.txt under {sys.executable}: {', '.join(drifted)}; "
                         "run `make setup` (or update constraints.txt after `make test` passes with them)")
