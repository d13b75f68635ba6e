# Set-up and the two jobs a fresh machine needs: `make demo` and `make test`.
# Every Python package comes from uv.lock (exact versions and hashes); `make lock` regenerates it
# after a change to pyproject.toml, and `make test` refuses a lock that pyproject.toml has outgrown.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.anybind-installed
# uv resolves, locks and installs; it lives in its own small environment, installed by pip from a
# hash-pinned requirements file, so the tool that installs the lock is pinned too.
UV_HOME := .uv
UV := $(UV_HOME)/bin/uv
UV_REQUIREMENTS := requirements/uv.txt
# Debian packages the tests and the offline world use: speech synthesizers of three techniques speak
# the digit words (espeak-ng formants; flite and festival's diphone, statistical and HTS voices), and
# chromium, headless, runs the search page's browser test.
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts chromium
export HF_HUB_OFFLINE ?= 1
# The interpreter is the machine's own ($(PYTHON)), never one uv would download.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
LOCK_HINT := uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock with the change

.PHONY: install apt demo test lint docs lock lock-check lock-upgrade bench clean

install: $(STAMP) apt

$(UV): $(UV_REQUIREMENTS)
	test -x $(UV_HOME)/bin/python || $(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(UV_REQUIREMENTS)
	touch $(UV)

# Two steps: every locked dependency first (setuptools among them), then anybind itself, built with
# that locked setuptools. --locked stops with LOCK_HINT's advice when pyproject.toml changed alone.
$(STAMP): pyproject.toml uv.lock $(UV)
	@$(MAKE) --no-print-directory lock-check
	$(UV) sync --locked --all-extras --python $(PYTHON) --no-install-project
	$(UV) sync --locked --all-extras --python $(PYTHON)
	touch $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: install
	$(BIN)/python recipes/demo.py

test: install lint docs
	$(BIN)/python -m pytest -q

# The docs site (mkdocs.yml, docs/) into build/site; --strict fails on any warning: a broken link, a
# page missing from the nav, a docstring the API reference cannot read. Part of `make test`.
DOCS_SITE := build/site
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(DOCS_SITE)

# The lock against pyproject.toml, then ruff and mypy (configured in pyproject.toml); part of `make test`.
lint: install lock-check
	$(BIN)/ruff check .
	$(BIN)/mypy

# Fails, with what to do, when pyproject.toml's dependencies changed and uv.lock was not regenerated.
# Offline: a lock that matches is checked without the network (a stale one fails either way).
lock-check: $(UV)
	@$(UV) lock --check --offline --python $(PYTHON) --quiet || { echo "error: $(LOCK_HINT)" >&2; exit 1; }

# Regenerates uv.lock from pyproject.toml, keeping every pin that still fits.
lock: $(UV)
	$(UV) lock --python $(PYTHON)

# Moves every package in uv.lock to its newest version that pyproject.toml allows.
lock-upgrade: $(UV)
	$(UV) lock --upgrade --python $(PYTHON)

bench: install
	$(BIN)/python benchmarks/embed_throughput.py

clean:
	rm -rf $(VENV) $(UV_HOME) out .pytest_cache $(DOCS_SITE)
