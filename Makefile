# Two commands do everything on a fresh machine with Python 3.10+:
#   make report   the notebook pipeline: trains, evaluates, writes figures/ and build/report.pdf
#   make test     the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PROFILE ?= auto

.PHONY: report test bench latex clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# PDF export needs xelatex and pandoc; install them from Debian's packages when we can.
latex:
	@if ! command -v xelatex >/dev/null || ! command -v pandoc >/dev/null || ! command -v pdftotext >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "[labkit] installing xelatex, pandoc, poppler-utils (Debian packages) for the PDF report"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc poppler-utils >/dev/null; \
	  else \
	    echo "[labkit] no xelatex/pandoc and no root apt-get: the report is built as HTML only (see README)"; \
	  fi; \
	fi

report: $(VENV)/.installed latex
	$(BIN)/python -m labkit report --profile $(PROFILE)

test: $(VENV)/.installed latex
	$(BIN)/python -m pytest -q -rs

bench: $(VENV)/.installed
	$(BIN)/python -m labkit.bench

clean:
	rm -rf build runs
