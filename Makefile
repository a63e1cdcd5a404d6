# Two commands for a fresh machine (see README):  make lab   and   make test
# Everything else here is what those two need.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
# The PyTorch installed when the venv has none (the version the course is tested with).
# An existing torch, CPU or GPU, is never replaced. Override: make lab TORCH='torch==2.9.1'
TORCH  ?= torch==2.13.0

# Tests run offline: no model hub, and any stray HTTP(S) goes to a closed local port.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
           HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
           http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
           NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

.PHONY: setup lab test lint clean-notebooks bench-notebooks

setup: $(VENV)/.latentlab-installed

$(VENV)/.latentlab-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[lab,test]"
	touch $@

lab: setup
	$(VENV)/bin/jupyter lab notebooks/00_welcome.ipynb

test: setup
	bash tools/install_chromium.sh
	$(VENV)/bin/ruff check latentlab tests tools notebooks
	$(PY) tools/notebooks.py --check
	$(OFFLINE) LATENTLAB_QUICK=1 $(VENV)/bin/pytest -v --durations=15

lint: setup
	$(VENV)/bin/ruff check latentlab tests tools notebooks

clean-notebooks: setup
	$(PY) tools/notebooks.py

bench-notebooks: setup
	$(OFFLINE) LATENTLAB_QUICK=1 $(PY) tools/bench_notebooks.py

# Rebuild every shipped weight from recipes/, in order (hours on a CPU; the tests run this same chain with --smoke):
# the course VAE (three runs) -> the latent denoiser and its adapted VAE -> the pixel-space denoiser.
.PHONY: weights
weights: setup
	$(PY) -m latentlab train recipe recipes/vae.toml recipes/denoiser.toml recipes/denoiser_pixel.toml --out-dir latentlab/weights --work-dir build/weights
