# The two set-up commands are `make book` and `make test`; both bootstrap .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv book test grade handout exercises bench lint clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)
	scripts/ensure-chromium
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_mlp_epoch.py

lint: $(STAMP)
	$(BIN)/ruff check reference_impl autograder tests benchmarks

clean:
	rm -rf _build
