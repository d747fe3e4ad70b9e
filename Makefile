# Regional AI Testbed — the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell scripts/base-python)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps demo test test-fast lint bench down clean cluster-smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use: prometheus (prometheus, promtool) for metering, postgresql for
# the control plane's PostgreSQL store test, fonts-nanum (the Korean TrueType font PDF statements
# embed, and the portal's browser tests render) and poppler-utils (pdffonts, pdftoppm: the statement
# tests check the embedded font), chromium + chromium-driver (the portal's browser tests).
system-deps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && \
	  command -v pdffonts >/dev/null && ls /usr/share/fonts/truetype/nanum/NanumGothic.ttf >/dev/null 2>&1 && \
	  command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus postgresql fonts-nanum poppler-utils chromium chromium-driver )

demo: install
	$(VENV)/bin/testbed demo

# Everything: the fast tier, the real-process tests (Ray, MLflow, PostgreSQL, Prometheus) and the image tests.
test: install system-deps
	$(PY) -m pytest

# The fast tier: no real process starts (tests/conftest.py fails a test that starts one unmarked).
test-fast: install
	$(PY) -m pytest -m "not integration and not image"

# The gates: lint, import contracts (pyproject [tool.importlinter]), types (strict on the SDK and contracts), format.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/ruff format --check .

bench: install
	@set -e; for f in tests/benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f; done

# A real cluster (Pulumi CLI, cloud credentials): pulumi up, first login, a company's first job.
REGION ?= gyeongnam
cluster-smoke: install   ## REGION=<stack> [TENANT=<id>] [SKIP_UP=1]
	PY=$(PY) tests/cluster_smoke.sh $(REGION) $(TENANT)

down:
	$(VENV)/bin/testbed down

clean: down
	rm -rf $(VENV) build *.egg-info
