# Two commands set everything up on a fresh machine:
#   make run    -> installs into .venv and runs the gateway (embedded PostgreSQL + Redis if no URLs set)
#   make test   -> installs into .venv (with test extras) and runs the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/gateway: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/gateway

.PHONY: install run test bench
install: $(BIN)/gateway

run: install
	$(BIN)/gateway run

test: install
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/gateway bench
