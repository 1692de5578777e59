# The two commands: `make serve` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; a GPU host may set TORCH=torch to take its default build.
TORCH ?= torch==2.13.0
ARGS ?=

.PHONY: serve test lint typecheck unit e2e bench-smoke model clean web

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[builtin,llamacpp,dev]"
	touch $@

## serve: install what is missing into .venv, then run the gateway in the foreground
serve: $(VENV)/.installed
	$(BIN)/modelfleet serve $(ARGS)

## test: lint, type-check, build the dashboard and run the whole test suite
test: $(VENV)/.installed lint typecheck web
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench scripts

typecheck: $(VENV)/.installed
	$(BIN)/mypy

## web: build the dashboard (web/) into src/modelfleet/api/ui_dist from the lockfile
web: web/node_modules/.package-lock.json
	cd web && npm run build

# npm ci again only when the lockfile changed since the last install.
web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit

e2e: $(VENV)/.installed
	$(BIN)/python -m pytest tests/e2e

## model: remake the tiny chat model (src/modelfleet/assets/tiny-chat) and its GGUF twin
model: $(VENV)/.installed
	$(BIN)/python scripts/make_tiny_chat_model.py
	$(BIN)/python scripts/make_tiny_gguf.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
