# aelightning — run `make help` for the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help install train evaluate reconstruct test test-slow reproduce reproduce-quick bench gpu-check lint format tensorboard clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project (idempotent: seconds once done)

train: install ## train the default model (extra Hydra overrides: make train ARGS="net.latent_dim=32")
	$(BIN)/ae-train $(ARGS)

evaluate: install ## evaluate a checkpoint: make evaluate CKPT=outputs/<run>/checkpoints/last.ckpt [ARGS=...]
	@test -n "$(CKPT)" || { echo 'usage: make evaluate CKPT=<run dir>/checkpoints/last.ckpt [ARGS="..."]' >&2; exit 2; }
	$(BIN)/ae-evaluate ckpt_path=$(CKPT) $(ARGS)

reconstruct: install ## run a checkpoint on your images: make reconstruct CKPT=<.ckpt> INPUT=<file or folder> [OUTPUT=<folder>] [ARGS=...]
	@test -n "$(CKPT)" -a -n "$(INPUT)" || { echo 'usage: make reconstruct CKPT=<run dir>/checkpoints/last.ckpt INPUT=<image file or folder> [OUTPUT=<folder>] [ARGS="..."]' >&2; exit 2; }
	$(BIN)/ae-reconstruct ckpt_path=$(CKPT) input=$(INPUT) $(if $(OUTPUT),output=$(OUTPUT)) $(ARGS)

test: install ## run the fast test suite (everything not marked slow)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

test-slow: install ## run only the slow tests
	$(BIN)/python -m pytest -m slow $(ARGS)

reproduce: install ## train + evaluate the README's experiments on full MNIST (data/MNIST/raw or download)
	$(BIN)/python -m aelightning.cli.reproduce $(ARGS)

reproduce-quick: install ## the same pipeline on the bundled sample with tiny budgets (minutes)
	$(BIN)/python -m aelightning.cli.reproduce --quick $(ARGS)

bench: install ## framework vs the seeds' loop vs the in-memory limit -> outputs/bench/ (ARGS="--quick", "--data-dir DIR")
	$(BIN)/python -m benchmarks $(ARGS)

gpu-check: install ## GPU paths on one CUDA device (< 5 min) -> outputs/gpucheck/ (ARGS=--dry-run: same cases on CPU)
	$(BIN)/python -m benchmarks.gpucheck $(ARGS)

lint: install ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

tensorboard: install ## serve TensorBoard over every run in outputs/
	$(BIN)/tensorboard --logdir outputs --bind_all

clean: ## remove caches (keeps .venv, outputs/ and data/)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
