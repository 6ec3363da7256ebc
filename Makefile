# Two commands on a fresh machine with Python 3.11 and pip:
#   make run    create .venv, install arpipe, run the default pipeline on the bundled sample
#   make test   install arpipe with its test extras, run the test suite
# constraints.txt pins the exact versions (torch's CPU build among them).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := pyproject.toml constraints.txt

.PHONY: run test install install-test mlflow-ui prefect-ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: $(DEPS) | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.test-installed: $(DEPS) | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@ $(VENV)/.run-installed

install: $(VENV)/.run-installed
install-test: $(VENV)/.test-installed

run: install
	$(BIN)/arpipe run

test: install-test
	$(BIN)/pytest

# The UIs on the runs this checkout made (MLflow: SQLite store in this directory; Prefect: its
# home inside work/). Both bind to 127.0.0.1.
mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

prefect-ui: install
	PREFECT_HOME=$(CURDIR)/work/prefect $(BIN)/prefect server start --host 127.0.0.1 --port 4200

clean:
	rm -rf work mlflow.db mlruns
