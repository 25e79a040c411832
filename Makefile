# Two commands do all set-up on a fresh machine:
#   make run   - create .venv, install the pinned stack, start the app
#   make test  - create .venv, install the pinned stack, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragbench-installed
PYTEST_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export RAGAS_DO_NOT_TRACK ?= true
export ANONYMIZED_TELEMETRY ?= False
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup browser proxy run test test-all test-fast lint bench clean

$(STAMP): requirements.txt constraints.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and exact: a bare "torch" would pull a several-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	# The project itself, editable: `import core` from anywhere in the venv, and `ragbench`.
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the end-to-end browser test (Playwright drives it via executable_path;
# Playwright's own browser download is not used). Installed when missing and apt-get is usable.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
	      || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium not found and apt-get unavailable: the browser test will be skipped"; fi; }

# Debian's nginx for the test of docs/nginx-ragbench.conf (the team server's reverse proxy).
proxy:
	@command -v nginx >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) >/dev/null \
	      || echo "could not install nginx: the reverse-proxy test will be skipped"; \
	  else echo "nginx not found and apt-get unavailable: the reverse-proxy test will be skipped"; fi; }

run: $(STAMP)
	$(BIN)/streamlit run streamlit_app.py

# The default suite leaves out the `llm` tests (whole stages driven by the 135M embedded model,
# minutes each on 2 cores); `make test-all` runs them too.
test: $(STAMP) browser proxy
	$(BIN)/python -m pytest -m "not llm" $(PYTEST_ARGS)

test-all: $(STAMP) browser proxy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not llm" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV)
