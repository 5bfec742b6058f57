# edgekit: two commands on a fresh machine.
#   make demo   the end-to-end demo
#   make test   lint + the whole test suite, then the device side on a real Python 3.9
# Both create .venv and install what is missing first (Python packages, mosquitto).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip

.PHONY: install system-deps test test-py39 test-fast lint demo bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP) system-deps

system-deps:
	@bash .ci/system-deps.sh

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest -q
	@$(MAKE) --no-print-directory test-py39

# The agent's tests and every device-side command on Debian bullseye's Python 3.9, in a
# chroot cached at /var/cache/edgekit/bullseye-py39 (needs root or sudo; see .ci/py39.sh).
test-py39: install
	@bash .ci/py39.sh

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

demo: install
	$(BIN)/edgekit demo

bench: install
	$(BIN)/python benchmarks/build_digits.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
