# flowerbed: two commands on a fresh Debian-like machine, `make demo` and `make test`.
# Each installs what it needs: Debian packages when missing, then the virtualenv.

VENV      ?= .venv
PY        := $(VENV)/bin/python
FLOWERBED := $(VENV)/bin/flowerbed
INVENTORY ?= inventory/examples/emulated.yaml
CAMPAIGN  ?= campaigns/demo.yaml
OUT       ?= results/demo
PYTEST_ARGS ?=

APT_PACKAGES := iproute2 iptables iputils-ping tcpdump iperf3 openssh-server ethtool procps chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo study study-quick test deps venv lint cluster-down clean

demo: deps venv
	$(SUDO) $(FLOWERBED) cluster up $(INVENTORY)
	$(SUDO) $(FLOWERBED) campaign run $(CAMPAIGN) --inventory $(INVENTORY) --out $(OUT) --overwrite
	@$(FLOWERBED) report build $(OUT) --quiet

# The seed study (Hayek et al. 2025) emulated: Pi 4 class nodes, Ethernet / WiFi / TDD 5G
# (inventory/examples/study.yaml, docs/emulation.md "The seed study, emulated").
STUDY_INVENTORY ?= inventory/examples/study.yaml
STUDY_CAMPAIGN  ?= campaigns/study-emulated.yaml
STUDY_OUT       ?= results/$(basename $(notdir $(STUDY_CAMPAIGN)))

study: deps venv
	$(SUDO) $(FLOWERBED) cluster up $(STUDY_INVENTORY)
	$(SUDO) $(FLOWERBED) campaign run $(STUDY_CAMPAIGN) --inventory $(STUDY_INVENTORY) --out $(STUDY_OUT) --overwrite
	@$(FLOWERBED) report build $(STUDY_OUT) --quiet

study-quick:
	$(MAKE) study STUDY_CAMPAIGN=campaigns/study-emulated-quick.yaml

test: deps venv
	$(SUDO) $(PY) -m pytest $(PYTEST_ARGS)

deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	python3 -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

# torch first, pinned to the CPU build (a bare `torch` would pull a CUDA build).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy inventory testbed instrumentation analysis workloads strategies

cluster-down: venv
	$(SUDO) $(FLOWERBED) cluster down $(INVENTORY)

clean: cluster-down
	rm -rf results
