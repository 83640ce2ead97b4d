# The two set-up commands are `make book` and `make test`; both bootstrap .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv book test grade handout gradescope release exercises bench bench-book bench-grading lint clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)
	scripts/ensure-system-packages
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# solutions/<a>/<nb>.md -> solutions/<a>/<nb>.ipynb -> nbgrader generate_assignment -> exercises/<a>/
exercises: $(STAMP)
	$(BIN)/python -m autograder build-exercises

# Grade the demo class (solution, blank and one student per bug in tests/fixtures/bugs.yaml),
# generated from the sources, with the real nbgrader: _build/grade/{grades.csv,feedback,results}.
grade: $(STAMP)
	$(BIN)/python -m autograder demo-class _build/demo-class
	$(BIN)/python -m autograder grade _build/demo-class --out _build/grade

# Student bundles: _build/handout/<a>/ = the exercise notebook + npdl modules of earlier chapters.
handout: $(STAMP)
	$(BIN)/python -m autograder handout --out _build/handout

# Gradescope autograders, one per assignment: _build/gradescope/<assignment>.zip (upload as is).
gradescope: $(STAMP)
	for a in $$($(BIN)/python -c "from autograder.notebooks import assignments; print(*assignments())"); do \
		$(BIN)/python -m autograder gradescope $$a --out _build/gradescope/$$a.zip || exit 1; done

# Student edition through assignment N (a standalone tree to push to the public repository):
# make release N=3 [OUT=../npdl-student]. Re-run with a larger N as the term goes on.
OUT ?= _build/edition
release: release-usage $(STAMP)
	$(BIN)/python -m autograder release --through $(N) --out $(OUT)

release-usage:
	@test -n "$(N)" || { echo "usage: make release N=<last released assignment> [OUT=folder]"; exit 2; }

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_mlp_epoch.py
	$(BIN)/python benchmarks/bench_conv.py

bench-book: $(STAMP)
	$(BIN)/python benchmarks/bench_book_build.py

bench-grading: $(STAMP)
	$(BIN)/python benchmarks/bench_grading.py

lint: $(STAMP)
	$(BIN)/ruff check reference_impl autograder tests benchmarks

clean:
	rm -rf _build
