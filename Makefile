# The two commands a newcomer needs (README.md):  make book  ·  make test
# Each creates .venv on first use and installs what it needs (tools/setup_env.sh).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
JB    := $(VENV)/bin/jupyter-book
# The local Omniglot mirror used by CI and the developers' machines, when it is there.
MIRROR := $(abspath ../shared/data/omniglot)
export METALEARN_OMNIGLOT_MIRROR ?= $(if $(wildcard $(MIRROR)/images_background.zip),$(MIRROR),)
# Notebooks run the same on every machine: fixed thread count, no stray GPU.
export OMP_NUM_THREADS ?= 2
export PYTHONHASHSEED := 0

BOOK_PAGES := $(shell find book -name '*.ipynb' -o -name '*.md' -o -name '*.bib' | grep -v _build)

.PHONY: setup data book book-execute test lint unit notebooks browser lab refresh benchmarks clean \
	lessons-release lessons-autograde lessons-feedback

setup:
	@bash tools/setup_env.sh

# Omniglot verified, extracted and cached before any notebook runs: a notebook's stored outputs
# must not depend on whether the cache existed (the first load prints a progress bar).
data: setup
	$(VENV)/bin/metalearn-course data

# The published book, from the notebooks' stored outputs, offline, warnings are errors; then
# the notebooks' Colab editions (MyST as plain Markdown) under colab/, published with it.
book: setup
	@mkdir -p book/_vendor/mathjax/output/chtml
	@cp node_modules/mathjax/es5/tex-chtml.js book/_vendor/mathjax/
	@cp -r node_modules/mathjax/es5/output/chtml/fonts book/_vendor/mathjax/output/chtml/
	$(JB) build . --builder html --all -W -n --keep-going
	@rm -rf _build/html/colab
	$(PY) tools/colab_edition.py _build/html/colab

# For authors: re-execute every notebook in place (stored outputs refreshed), then build.
book-execute: setup
	$(VENV)/bin/metalearn-course refresh
	$(MAKE) book

# ruff, then the architecture: import-linter's contracts in pyproject.toml ([tool.importlinter]).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# The whole suite: lint, book build, then one pytest run with the unit tests, nbval on every
# notebook of book/ and lessons/, the papermill quick runs and the browser test.
# Two pytest-xdist workers, a file (a notebook) at a time each, notebooks first (the longest
# files, so that the short ones fill the end). The notebooks fix their own thread count, so
# the numbers are those of a run on its own; two of them share the cores, and passive OpenMP
# threads sleep at a barrier instead of spinning while the other notebook computes.
# METALEARN_STRICT=1: a notebook's "your run vs the book" table raises on a claim that fails.
test: lint data book
	METALEARN_STRICT=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest book lessons tests -n 2 --dist loadfile \
	    --nbval --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=900 \
	    -p no:cacheprovider -o addopts="" --durations=15 -ra

unit: setup
	$(PY) -m pytest tests -m "not notebooks and not browser" -q

notebooks: data
	METALEARN_STRICT=1 $(PY) -m pytest book lessons --nbval --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=900 -p no:cacheprovider

browser: book
	$(PY) -m pytest tests/test_browser.py -q

# JupyterLab on the notebooks, with the project's kernel (the virtualenv's python3). Jupyter
# refuses to run as root (containers, cloud VMs, Colab-like machines) without --allow-root;
# other users keep its default. jupyterlab-myst (the dev extra) renders the notebooks' MyST:
# prebuilt, so enabled once installed; enabling it in the environment's own configuration undoes
# a `jupyter labextension disable` done there. (`labextension list` calls it "not compatible":
# its declared @jupyter/ydoc range is older than JupyterLab 4.6's; it loads and renders.)
lab: setup
	$(VENV)/bin/jupyter labextension enable --level=sys_prefix jupyterlab-myst
	$(VENV)/bin/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

refresh: setup
	$(VENV)/bin/metalearn-course refresh $(NB)

# Graded lessons (book/instructors.md): thin wrappers of nbgrader, run in lessons/ with its
# nbgrader_config.py; LESSON is an assignment folder of lessons/source/. nbgrader calls alembic
# (the gradebook's migrations) as a program, hence the venv's bin/ on PATH.
LESSON ?= 01_episodes
NBGRADER = cd lessons && PATH="$(abspath $(VENV)/bin):$$PATH" $(abspath $(VENV)/bin/nbgrader)

lessons-release: setup
	$(NBGRADER) generate_assignment $(LESSON) --force

lessons-autograde: setup
	$(NBGRADER) autograde $(LESSON)

lessons-feedback: setup
	$(NBGRADER) generate_feedback $(LESSON)

benchmarks: setup
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	$(PY) benchmarks/episode_sampler.py
	$(PY) benchmarks/protonet.py
	$(PY) benchmarks/maml_peers.py

clean:
	rm -rf _build book/_vendor
