# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-unit lint format typecheck check bench bench-faults clean chromium

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or: make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# grafana-client needs niquests, whose urllib3-future wheel ships a .pth that copies
	# itself over the real urllib3 at every interpreter start (breaking requests and
	# schemathesis); built from source with URLLIB3_NO_OVERRIDE it stays beside it.
	URLLIB3_NO_OVERRIDE=1 $(BIN)/python -m pip install --quiet --no-binary urllib3-future -e '.[dev]'
	# The fallback MQTT broker, built for `make run` only where chargeflow.mqtt finds no
	# mosquitto (the same search), lives in its own venv: amqtt pins websockets==15, which
	# must not downgrade the gateway's websockets.
	$(BIN)/python -c 'import sys; from chargeflow.mqtt import mosquitto_binary; sys.exit(mosquitto_binary() is None)' \
		|| $(MAKE) --no-print-directory $(AMQTT)
	touch $(STAMP)

AMQTT := .venv-mqtt/bin/amqtt
$(AMQTT):
	$(PYTHON) -m venv .venv-mqtt
	.venv-mqtt/bin/python -m pip install --quiet 'amqtt>=0.11,<0.13'

run: $(STAMP)
	$(BIN)/chargeflow run

# The HTML report's browser test drives Debian's chromium (no browser download); as
# root it is installed where missing, otherwise the test says what is missing.
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
		|| echo "could not install chromium (needs root and Debian packages): tests/integration/test_report_browser.py will fail"

# The tests cover the amqtt fallback too, so they always have it.
test: $(STAMP) $(AMQTT) chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# The tests that need no broker, database or process (pure logic, docs, settings).
test-unit: $(STAMP)
	$(BIN)/pytest tests/unit -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.flows

# Fault detection quality, ours beside the static baseline (100 stations x 14 simulated
# days through the whole pipeline; BENCH_FAULTS_ARGS="--stations 30 --days 6 --time-scale 1440 --faults auto:0.3@2.5d..5d" for less).
bench-faults: $(STAMP)
	$(BIN)/python -m bench.faults $(BENCH_FAULTS_ARGS)

clean:
	rm -rf $(VENV) .venv-mqtt .chargeflow .pytest_cache .mypy_cache .ruff_cache
