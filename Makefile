# Two entry points for a fresh machine (README): `make demo` and `make test`.
# Both create ./.venv on first use and reinstall only when pyproject.toml changes (idempotent).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: demo test install clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch/torchvision come with the package's dependencies; on machines with a pip constraint or a
# local wheel index (like CI's) pip takes them from there.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The main job: a small real study on an embedded local Ray, then the Pareto table, plots, report
# and exported best configs.
# Idempotent: a second `make demo` resumes (a no-op once finished) instead of refusing the storage.
demo: $(VENV)/.installed
	if [ -f $(DEMO_DIR)/study.yaml ]; then $(BIN)/incsweep study resume $(DEMO_DIR); \
	else $(BIN)/incsweep study run configs/studies/demo.yaml --storage $(DEMO_DIR); fi
	$(BIN)/incsweep analyze $(DEMO_DIR) --out $(DEMO_DIR)/analysis
	$(BIN)/incsweep export $(DEMO_DIR) --select front --out $(DEMO_DIR)/best

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf $(DEMO_DIR)
