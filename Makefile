# Two commands do everything on a fresh machine with Python 3.10+:
#   make report   the notebook pipeline: trains, evaluates, writes figures/ and build/report.pdf
#   make test     the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PROFILE ?= auto

.PHONY: report test bench system clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# PDF export needs xelatex and pandoc, the browser test Chromium: Debian's packages, when we can.
system:
	@if ! command -v xelatex >/dev/null || ! command -v pandoc >/dev/null || ! command -v pdftotext >/dev/null \
	    || ! command -v chromium >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "[labkit] installing xelatex, pandoc, poppler-utils, chromium (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc poppler-utils chromium >/dev/null; \
	  else \
	    echo "[labkit] no xelatex/pandoc/chromium and no root apt-get: HTML report only, browser test skipped (see README)"; \
	  fi; \
	fi

report: $(VENV)/.installed system
	$(BIN)/python -m labkit report --profile $(PROFILE)

test: $(VENV)/.installed system
	$(BIN)/python -m pytest -q -rfEs

bench: $(VENV)/.installed
	$(BIN)/python -m labkit.bench

clean:
	rm -rf build runs
