# Two entry points for a fresh machine (README): `make demo` and `make test`.
# Both create ./.venv on first use and reinstall only when pyproject.toml changes (idempotent).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: demo test typecheck install data clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch/torchvision come with the package's dependencies; on machines with a pip constraint or a
# local wheel index (like CI's) pip takes them from there. Strict editable mode: setuptools links each
# module into build/__editable__*, so the checkout's root (tests/, bare study/...) is never on sys.path,
# and mypy and editors resolve the install statically. The links are per file: a module added or
# removed re-installs (MODULE_LIST changes), an edit does not need to.
MODULE_LIST := $(VENV)/.modules
MODULES := $(sort $(shell find -L incsweep -name '*.py' -not -path '*/__pycache__/*' 2>/dev/null))
$(shell mkdir -p $(VENV); echo '$(MODULES)' | cmp -s - $(MODULE_LIST) || echo '$(MODULES)' > $(MODULE_LIST))
ifeq ($(wildcard build/__editable__.incsweep-*/incsweep/__init__.py),)  # the link tree was removed: link again
$(shell rm -f $(VENV)/.installed)
endif
$(VENV)/.installed: pyproject.toml $(MODULE_LIST) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $@

install: $(VENV)/.installed

# The out-of-tree plugin package the tests run studies over (tests/test_example_plugin.py): installed
# as a user would install theirs, next to incsweep; --no-deps: its one dependency is incsweep itself.
$(VENV)/.installed-example: examples/incsweep_example/pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet --no-deps -e examples/incsweep_example
	touch $@

# Real Fashion-MNIST for the demo: Debian's package when this machine can install it (root + apt-get),
# else torchvision's download into FASHION_CACHE (its own progress bar), else one line saying what to
# run. INCSWEEP_DATA pointing at the IDX files skips the step. APT=false skips the apt-get attempt.
FASHION_DIR := /usr/share/datasets/fashion-mnist
FASHION_CACHE ?= $(HOME)/.cache/incsweep/data
APT ?= apt-get
data: $(VENV)/.installed
	@if [ -d $(FASHION_DIR) ] || [ -n "$$INCSWEEP_DATA" ] || [ -d $(FASHION_CACHE)/FashionMNIST/raw ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v $(APT) >/dev/null && [ "$(APT)" != false ]; then \
	  echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist) into $(FASHION_DIR)"; \
	  $(APT) update -qq && $(APT) install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "downloading Fashion-MNIST (about 30 MB) with torchvision into $(FASHION_CACHE)"; \
	  $(BIN)/python -c "import sys; from torchvision.datasets import FashionMNIST as F; [F(sys.argv[1], train=t, download=True) for t in (True, False)]" $(FASHION_CACHE) >/dev/null 2>&1 \
	  || { echo "Fashion-MNIST is not installed and could not be downloaded: run 'sudo apt-get install dataset-fashion-mnist' (Debian) or set INCSWEEP_DATA to a folder holding its IDX files (docs/datasets.md)"; exit 1; }; fi

# The main job: a small real study on an embedded local Ray, then the Pareto table, plots, report
# and exported best configs.
# Idempotent: a second `make demo` resumes (a no-op once finished) instead of refusing the storage.
demo: $(VENV)/.installed data
	export INCSWEEP_DATA="$${INCSWEEP_DATA:-$(FASHION_CACHE)}"; \
	if [ -f $(DEMO_DIR)/study.yaml ]; then $(BIN)/incsweep study resume $(DEMO_DIR); \
	else $(BIN)/incsweep study run configs/studies/demo.yaml --storage $(DEMO_DIR); fi
	$(BIN)/incsweep analyze $(DEMO_DIR) --out $(DEMO_DIR)/analysis
	$(BIN)/incsweep export $(DEMO_DIR) --select front --out $(DEMO_DIR)/best

# Lint and type-check first (ruff: pyflakes, pycodestyle, import order; mypy: the library packages;
# both configured in pyproject.toml), then the suite.
test: $(VENV)/.installed $(VENV)/.installed-example typecheck
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# mypy over the installed package (its folders are at their import paths: incsweep/study -> study/)
typecheck: $(VENV)/.installed
	$(BIN)/mypy --config-file pyproject.toml -p incsweep

clean-demo:
	rm -rf $(DEMO_DIR)
