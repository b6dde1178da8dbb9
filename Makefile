# Two commands do everything on a fresh machine with Python 3.11+:
#   make report   the notebook pipeline: trains, evaluates, writes build/ (report.pdf, report.html, figures/)
#   make test     the linter and the test suite (what CI runs)
# and: make demo (the latent sliders in the browser), make test-fast (no slow tests), make publish
# (a cpu or full report's results into figures/<profile>/).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PROFILE ?= auto
PORT   ?= 8866

.PHONY: report test test-fast lint demo publish bench system clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# Optional: xelatex and pandoc (the PDF), poppler (its text), Chromium (the browser tests). Installed
# from Debian's packages where that works; where it does not, one line says so and the rest goes on.
system:
	@if command -v xelatex >/dev/null && command -v pandoc >/dev/null && command -v pdftotext >/dev/null \
	    && command -v chromium >/dev/null; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends texlive-xetex \
	       texlive-fonts-recommended texlive-plain-generic pandoc poppler-utils chromium >/dev/null 2>&1; then \
	  echo "[labkit] installed xelatex, pandoc, poppler-utils and chromium (Debian packages)"; \
	else \
	  echo "[labkit] no xelatex, pandoc or chromium, and apt-get cannot install them here: HTML report only, browser tests skipped"; \
	fi

report: $(VENV)/.installed system
	$(BIN)/python -m labkit report --profile $(PROFILE)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

test: lint system
	$(BIN)/python -m pytest -q -rfEs

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

demo: $(VENV)/.installed
	$(BIN)/voila notebooks/05_demo.ipynb --port=$(PORT)

publish: $(VENV)/.installed
	$(BIN)/python -m labkit publish --build build

bench: $(VENV)/.installed
	$(BIN)/python -m labkit.bench

clean:
	rm -rf build runs
