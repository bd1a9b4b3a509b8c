# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVICES := $(PY) scripts/services.py
PROCESSES := $(PY) scripts/processes.py

.PHONY: install ext services browser haproxy services-down services-status run stop test lint bench chaos vendor vendor-check screenshots

install: $(VENV)/.installed ext

# The OTLP protobuf door's compiled reader (ingestion/otlp/reader.py says why and what happens
# without it): rebuilt whenever its .pyx changes.
WIRE_SO := ingestion/otlp/_wire$(shell py=$(PYTHON); test -x $(PY) && py=$(PY); $$py -c \
	'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
ext: $(WIRE_SO)

$(WIRE_SO): ingestion/otlp/_wire.pyx scripts/build_ext.py $(VENV)/.installed
	$(PY) scripts/build_ext.py
	touch $@

$(VENV)/.installed: requirements/base.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt
	touch $@

services: install
	$(SERVICES) up

# Debian's chromium and chromium-driver, for the dashboard's browser tests (tests/browser.py).
browser:
	$(SERVICES) browser

# Debian's HAProxy, for API_INSTANCES > 1 and the load balancer's tests.
haproxy:
	$(SERVICES) haproxy

services-down:
	$(SERVICES) down

services-status:
	$(SERVICES) status

run: services
	$(PROCESSES) up

stop:
	$(PROCESSES) down

test: services browser haproxy
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: services
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(PY) -m bench $(BENCH_ARGS)

# Each tier-1 fault under load (CHAOS_RATE spans/s for CHAOS_SECONDS, CHAOS_ARGS="--only kafka"):
# kills and restarts the services, so nothing else should use them meanwhile. ~10 minutes.
chaos: services
	$(PY) -m chaos $(CHAOS_ARGS)

# Refresh the vendored htmx and uPlot from the npm registry by their pinned versions.
vendor:
	$(PYTHON) scripts/vendor_assets.py

vendor-check:
	$(PYTHON) scripts/vendor_assets.py --check

# The README's screenshots of the dashboard (docs/screenshots/*.png), by headless Chromium.
screenshots: services
	$(PY) -m bench screenshots
