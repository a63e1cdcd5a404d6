# Two commands for a fresh machine (see README):  make lab   and   make test
# Everything else here is what those two need, or serves teachers and maintainers (make site, make weights).

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
# The PyTorch installed when the venv has none (the version the course is tested with).
# An existing torch, CPU or GPU, is never replaced. Override: make lab TORCH='torch==2.9.1'
TORCH  ?= torch==2.13.0
# Every other dependency is installed at the version the tests passed with (torch is not in this file).
CONSTRAINTS := constraints.txt
# Extra JupyterLab options for `make lab`, e.g. LAB_ARGS='--port=9999' or LAB_ARGS='--ip=0.0.0.0' in a container.
LAB_ARGS ?=

# Tests run offline: no model hub, and any stray HTTP(S) goes to a closed local port. The test configuration
# (conftest.py) sets the same and guards every Python process; these cover the tools run outside pytest.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
           HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
           http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
           NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
           PYTHONPATH=$(CURDIR)/tests/offline

.PHONY: setup lab test test-full lint clean-notebooks bench-notebooks site

setup: $(VENV)/.latentlab-installed

$(VENV)/.latentlab-installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[lab,test,site]"
	touch $@

# As root or not, with or without a display: tools/lab.py adds --allow-root / --no-browser where needed and
# JupyterLab prints the address of lesson 00 to open.
lab: setup
	$(PY) tools/lab.py $(LAB_ARGS)

test: setup
	$(PY) tools/chromium.py --install
	$(PY) tools/debian_photos.py --install
	$(PY) -m ruff check conftest.py latentlab tests tools notebooks
	$(PY) tools/notebooks.py --check
	$(PY) -m pytest -v -rs --durations=15

# Every notebook in full mode (the real lessons: LATENTLAB_QUICK unset), offline, from a fresh kernel each; records
# pass/fail, wall time and peak memory in docs/notebooks-full.md. Long: tens of minutes on a CPU (lesson 08 alone ~8).
test-full: setup
	$(OFFLINE) $(PY) tools/bench_notebooks.py --full --record docs/notebooks-full.md

lint: setup
	$(PY) -m ruff check conftest.py latentlab tests tools notebooks

clean-notebooks: setup
	$(PY) tools/notebooks.py

bench-notebooks: setup
	$(OFFLINE) LATENTLAB_QUICK=1 $(PY) tools/bench_notebooks.py

# The course site in build/site (open build/site/index.html): every lesson executed with its outputs, full mode by
# default (LATENTLAB_QUICK=1 make site: a quick build), offline; executed lessons are cached in build/site-cache,
# so a rebuild re-executes only the lessons that changed. Sphinx + myst-nb (site/conf.py, tools/site.py).
site: setup
	$(OFFLINE) $(PY) tools/site.py

# Rebuild every shipped weight from recipes/, in order (hours on a CPU; the tests run this same chain with --smoke):
# the course VAE (three runs) -> its tiny preview decoder -> the latent denoiser and its adapted VAE -> the pixel-space
# denoiser.
.PHONY: weights
weights: setup
	$(PY) tools/debian_photos.py --install
	$(PY) -m latentlab train recipe recipes/vae.toml recipes/tiny_decoder.toml recipes/denoiser.toml recipes/denoiser_pixel.toml --out-dir latentlab/weights --work-dir build/weights

# Lesson 10's compression sweep (recipes/sweep/: six VAE geometries and a small latent denoiser on each), two CPU
# threads, about 1.5 hours; written to latentlab/weights/sweep/ (tools/sweep.py).
.PHONY: sweep
sweep: setup
	$(OFFLINE) $(PY) tools/sweep.py
