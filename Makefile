# Two commands for a fresh clone (see README):  make demo   and   make test
# Environments are built from requirements/*.lock by scripts/setup-venv.sh.
SHELL := /bin/bash
VENV := .venv
VENV_STOCK := .venv-stock
PYTEST_ARGS ?=

.PHONY: venv venv-stock demo test test-stock lint format clean

venv:
	@scripts/setup-venv.sh ipex

venv-stock:
	@scripts/setup-venv.sh stock

demo: venv
	@scripts/demo.sh

test: venv
	NERVANA_LSTM_STACK=ipex $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-stock: venv-stock
	NERVANA_LSTM_STACK=stock $(VENV_STOCK)/bin/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/python -m ruff check .
	$(VENV)/bin/python -m ruff format --check .

format: venv
	$(VENV)/bin/python -m ruff check --fix .
	$(VENV)/bin/python -m ruff format .

clean:
	rm -rf runs bench-out .pytest_cache
