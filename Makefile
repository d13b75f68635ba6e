# Set-up and the two jobs a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.anybind-installed
TORCH := torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0
# Debian packages the tests and the offline world use (espeak-ng speaks the digit words; chromium,
# headless, runs the search page's browser test). Each name is also the command `apt` looks for.
APT_PACKAGES := espeak-ng chromium
export HF_HUB_OFFLINE ?= 1

.PHONY: install apt demo test lint bench clean

install: $(STAMP) apt

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: install
	$(BIN)/python recipes/demo.py

test: install lint
	$(BIN)/python -m pytest -q

# ruff and mypy, configured in pyproject.toml; part of `make test`.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/embed_throughput.py

clean:
	rm -rf $(VENV) out .pytest_cache
