# One entry point for people and CI. `make demo` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint check clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,faces,ocr,bench,ray,redis]'
	$(BIN)/pip install -q --no-deps mediapipe==0.10.21  # its deps are the 'faces' extra (see pyproject)
	$(BIN)/pip install -q --no-deps rapidocr-onnxruntime==1.4.4 nudenet==3.4.2  # deps: the 'ocr' extra
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/imagefunnel demo

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

check: lint test

# Debian's headless Chromium for the report/dashboard tests (Playwright drives it; it downloads nothing).
browser:
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell; }

clean:
	rm -rf $(VENV) imagefunnel-out .pytest_cache .mypy_cache .ruff_cache
