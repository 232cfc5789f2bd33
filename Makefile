# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# pip-tools and build live in their own venv: the runtime venv holds only what the locks name.
TOOLS  ?= .venv-tools
# `make lock` resolves against the public index alone, so that the lock holds its hashes (every
# wheel of each pinned version: x86_64, aarch64, ...) and nothing of this machine's pip config.
LOCK_ENV := env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null
COMPILE  := $(TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
            --index-url https://pypi.org/simple --no-emit-index-url

.PHONY: demo test install install-test clean bench lock dist mutation mutation-lock

# Every install path installs from the hash-pinned locks (--require-hashes), then the project
# itself without dependencies. The Debian packages come first: on a fresh Debian 12,
# `python3 -m venv` fails without python3-venv (the script is quiet when nothing is missing).
$(BIN)/backupctl: pyproject.toml requirements.lock
	PYTHON=$(PYTHON) scripts/install-system-packages.sh venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/backupctl

install: $(BIN)/backupctl

# The test suite's Debian packages (python3-venv among them) before the venv, then the venv.
install-test:
	PYTHON=$(PYTHON) scripts/install-system-packages.sh test
	$(MAKE) --no-print-directory install
	$(BIN)/pip install --quiet --require-hashes -r requirements-test.lock
	$(BIN)/pip install --quiet --no-deps -e .

$(TOOLS)/bin/pip-compile:
	PYTHON=$(PYTHON) scripts/install-system-packages.sh venv
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet pip-tools build

# Regenerates requirements.lock (runtime) and requirements-test.lock (runtime + test extras,
# the runtime pins kept as they are in requirements.lock). Commit both.
# `make lock LOCK_UPGRADE=` adds what pyproject.toml newly names and leaves every other pin as it is
# (pip-compile keeps the pins already in an output file unless told --upgrade).
LOCK_UPGRADE ?= --upgrade
lock: $(TOOLS)/bin/pip-compile
	$(LOCK_ENV) $(COMPILE) $(LOCK_UPGRADE) --output-file requirements.lock pyproject.toml
	$(LOCK_ENV) $(COMPILE) $(LOCK_UPGRADE) --extra test --constraint requirements.lock \
	    --output-file requirements-test.lock pyproject.toml

# Wheel, sdist and the rescue kit (scripts/build_kit.py: dist/rescue-kit/ and its tar + .sha256).
# The kit tar is also copied where an installed agent looks for it (<venv>/share/backupctl/), so
# that `init` and `backup` from this checkout upload it into the repositories.
dist: install $(TOOLS)/bin/pip-compile
	rm -rf dist
	$(BIN)/python scripts/build_kit.py --out dist
	$(TOOLS)/bin/python -m build --sdist --outdir dist .
	mkdir -p $(VENV)/share/backupctl
	rm -f $(VENV)/share/backupctl/backupctl-rescue-kit-*.tar
	cp dist/backupctl-rescue-kit-*.tar dist/backupctl-rescue-kit-*.tar.sha256 $(VENV)/share/backupctl/

# Generates a small sample practice tree and runs init, backup, snapshots,
# a second backup, restore, check --read-data on a local repository under demo/ (or $(DEMO):
# tests/integration/test_demo.py runs `make demo` with its own folder and the suite's venv).
DEMO ?= demo
demo: install
	$(BIN)/python scripts/demo.py --workdir $(DEMO)

# Two processes (pytest-xdist), each taking whole test files (--dist loadfile: a file's
# module-scoped servers start once): most of the suite waits on servers, children and the
# booted system's timers, so two processes on two cores take 13 minutes where one took 27.
TEST_WORKERS ?= 2
test: install-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

clean:
	rm -rf $(VENV) $(TOOLS) demo dist .pytest_cache mutants

# Benchmarks against restic and borg (docs/BENCHMARKS.md). Installs both from Debian.
bench: install-test
	command -v restic >/dev/null && command -v borg >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup)
	$(BIN)/python bench/run.py --scale 0.25 --runs 3

# Mutation testing of the core (docs/RELIABILITY.md), NOT part of `make test`: it runs the unit tests
# once per mutant (crypto ~1,100 mutants, repo ~4,400, engines ~1,800). One area at a time:
#   make mutation AREA=crypto      (or repo, engines; AREA=all for the three)
# mutmut keeps its verdicts under mutants/ and resumes where a run stopped; `rm -rf mutants` to start
# over. The per-module table is printed and written to mutants/summary-$(AREA).json.
# A whole run of repo or the engines takes hours on two cores; `SAMPLE=300` tests a random sample of
# the area's mutants instead (seeded: SEED=2026) and gives each score with its 95 % interval:
#   make mutation AREA=repo SAMPLE=300
AREA ?= crypto
SAMPLE ?=
SEED ?= 2026
MUTATION_JOBS ?= 2
MUTANTS_crypto  := 'agent.crypto.*'
MUTANTS_repo    := 'agent.repo.*'
MUTANTS_engines := 'agent.engine.retention.*' 'agent.engine.prune.*' 'agent.engine.restore.*' 'agent.engine.check.*'
MUTANTS_all     := $(MUTANTS_crypto) $(MUTANTS_repo) $(MUTANTS_engines)
mutation: install-test
	$(BIN)/pip install --quiet --require-hashes -r requirements-mutation.lock
ifeq ($(SAMPLE),)
	$(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS_$(AREA))
	$(BIN)/python scripts/mutation_report.py --area $(AREA) --json mutants/summary-$(AREA).json
else
	# The mutants are generated (and the tests mapped to them) by a run that names none of them;
	# mutmut then stops saying that nothing matches, which is the expected end here.
	test -d mutants || { $(BIN)/mutmut run --max-children $(MUTATION_JOBS) 'agent.no_such_module.*' \
	    > .mutmut-generate.log 2>&1 || grep -q "but nothing matches" .mutmut-generate.log \
	    || { cat .mutmut-generate.log; exit 1; }; }
	$(BIN)/python scripts/mutation_report.py --area $(AREA) --pick $(SAMPLE) --seed $(SEED) > mutants/sample-$(AREA).txt
	$(BIN)/mutmut run --max-children $(MUTATION_JOBS) $$(cat mutants/sample-$(AREA).txt)
	$(BIN)/python scripts/mutation_report.py --area $(AREA) --only mutants/sample-$(AREA).txt \
	    --json mutants/summary-$(AREA)-sample.json
endif

# requirements-mutation.lock: mutmut and what it needs, the pins shared with the test lock kept.
mutation-lock: $(TOOLS)/bin/pip-compile
	$(LOCK_ENV) $(COMPILE) $(LOCK_UPGRADE) --constraint requirements-test.lock \
	    --output-file requirements-mutation.lock requirements-mutation.in
