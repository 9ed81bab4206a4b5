# edge-inspector: the two set-up commands are `make demo` and `make test`.
#
# TORCH_VARIANT=cpu (default) installs the CPU wheel of torch $(TORCH_VERSION) and never pulls CUDA
# packages; TORCH_VARIANT=cuda installs the CUDA build on a GPU box.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_VARIANT ?= cpu
DEMO_PARTS ?= 40

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(TORCH_VARIANT)
CONSTRAINTS := $(VENV)/constraints.txt

ifeq ($(TORCH_VARIANT),cpu)
TORCH_SPEC := torch==$(TORCH_VERSION)+cpu
else ifeq ($(TORCH_VARIANT),cuda)
TORCH_SPEC := torch==$(TORCH_VERSION)
else
$(error TORCH_VARIANT must be cpu or cuda, not $(TORCH_VARIANT))
endif

.PHONY: demo test venv system-deps firmware bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	echo "$(TORCH_SPEC)" > $(CONSTRAINTS)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	PIP_CONSTRAINT=$(abspath $(CONSTRAINTS)) $(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[all,test]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/edge-inspector demo prepare --config configs/demo.yaml
	$(BIN)/edge-inspector run --config configs/demo.yaml --max-parts $(DEMO_PARTS)
	$(BIN)/edge-inspector status --config configs/demo.yaml

system-deps:
	tools/install_system_deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python tools/bench_pipeline.py

clean:
	rm -rf var build .pytest_cache
