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

.PHONY: demo demo-vlm test venv system-deps firmware bench clean install

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

# the demo with the VLM judge: tiny random Qwen2.5-VL AWQ checkpoints built offline (no download), the
# demo product's own recipe; `status` then shows each part's votes (their answers are random: a
# newcomer's smoke test of the whole path, not an inspection)
TINY_MODELS ?= var/tiny-models
DEMO_VLM_SET := --set judge.kind=vlm --set judge.model_dir=$(TINY_MODELS)/qwen2_5_vl-awq \
	--set judge.recipe=configs/recipes/pcb-demo.yaml --set policy.deadline_ms=30000
demo-vlm: $(STAMP)
	test -f $(TINY_MODELS)/qwen2_5_vl-awq/config.json || $(BIN)/python tools/make_tiny_models.py --out $(TINY_MODELS)
	$(BIN)/edge-inspector demo prepare --config configs/demo.yaml
	$(BIN)/edge-inspector run --config configs/demo.yaml $(DEMO_VLM_SET) --max-parts $(DEMO_PARTS)
	$(BIN)/edge-inspector status --config configs/demo.yaml --json

system-deps:
	tools/install_system_deps.sh

firmware: system-deps
	$(MAKE) -C firmware_bridge all sim

test: $(STAMP) system-deps firmware
	PYTHON=$(abspath $(BIN)/python) tools/build_llama_server.sh >/dev/null  # the remote judge's test server
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python tools/bench_pipeline.py

# --- install on a station (root): see docs/operations.md ------------------------------------
# make install [DESTDIR=/staging] [PREFIX=/opt/edge-inspector] [INSTALL_VENV=0] [TORCH_VARIANT=cuda]
# Puts the program in $(PREFIX)/venv, the unit, the user (sysusers.d), the data directory
# (tmpfiles.d), the udev rule for the bridge, an example config in /etc/edge-inspector (never
# overwriting one that is there) and the operations guide. Without DESTDIR it also applies them.
PREFIX ?= /opt/edge-inspector
INSTALL_VENV ?= 1
UNITDIR ?= /etc/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
TMPFILESDIR ?= /usr/lib/tmpfiles.d
UDEVDIR ?= /etc/udev/rules.d
DOCDIR ?= /usr/local/share/doc/edge-inspector

install:
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(UDEVDIR) \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)/etc/edge-inspector
	sed 's|/opt/edge-inspector/venv|$(PREFIX)/venv|g; s|/usr/local/share/doc/edge-inspector|$(DOCDIR)|g' \
		systemd/edge-inspector.service > $(DESTDIR)$(UNITDIR)/edge-inspector.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/edge-inspector.service
	install -m 0644 systemd/edge-inspector.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/edge-inspector.conf
	install -m 0644 systemd/edge-inspector.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/edge-inspector.conf
	install -m 0644 systemd/99-edge-inspector-bridge.rules $(DESTDIR)$(UDEVDIR)/99-edge-inspector-bridge.rules
	install -m 0644 docs/operations.md $(DESTDIR)$(DOCDIR)/operations.md
	test -e $(DESTDIR)/etc/edge-inspector/station.yaml || \
		install -m 0640 configs/station.example.yaml $(DESTDIR)/etc/edge-inspector/station.yaml
ifeq ($(INSTALL_VENV),1)
	test -x $(DESTDIR)$(PREFIX)/venv/bin/python || $(PYTHON) -m venv $(DESTDIR)$(PREFIX)/venv
	echo "$(TORCH_SPEC)" > $(DESTDIR)$(PREFIX)/constraints.txt
	$(DESTDIR)$(PREFIX)/venv/bin/pip install --quiet "$(TORCH_SPEC)"
	$(DESTDIR)$(PREFIX)/venv/bin/pip install --quiet -c $(DESTDIR)$(PREFIX)/constraints.txt ".[all]"
endif
ifeq ($(DESTDIR),)
	systemd-sysusers edge-inspector.conf
	systemd-tmpfiles --create edge-inspector.conf
	chgrp edge-inspector /etc/edge-inspector/station.yaml
	-udevadm control --reload && udevadm trigger --subsystem-match=tty
	systemctl daemon-reload
	@echo "installed. Edit /etc/edge-inspector/station.yaml, run 'edge-inspector doctor -c /etc/edge-inspector/station.yaml',"
	@echo "then: systemctl enable --now edge-inspector"
endif

clean:
	rm -rf var build .pytest_cache
