# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install install-test clean bench

$(BIN)/backupctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BIN)/backupctl

install: $(BIN)/backupctl

install-test: install
	$(BIN)/pip install --quiet -e '.[test]'
	scripts/install-system-packages.sh

# Generates a small sample practice tree and runs init, backup, snapshots,
# a second backup, restore, check --read-data on a local repository under demo/.
demo: install
	$(BIN)/python scripts/demo.py --workdir demo

test: install-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo .pytest_cache

# Benchmarks against restic and borg (docs/BENCHMARKS.md). Installs both from Debian.
bench: install-test
	command -v restic >/dev/null && command -v borg >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup)
	$(BIN)/python bench/run.py --scale 0.25 --runs 3
