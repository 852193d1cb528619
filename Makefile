# ibgw: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
PLUGINS := $(sort $(wildcard plugins/ibgw-*))
EXAMPLES := $(sort $(wildcard examples/ibgw-*))
EDITABLES := $(foreach p,$(PLUGINS) $(EXAMPLES),-e $(p))
STAMP := $(VENV)/.ibgw-installed
DEPS := setup.cfg pyproject.toml $(wildcard plugins/*/pyproject.toml) $(wildcard examples/*/pyproject.toml)

.PHONY: demo test lint bench install clean

$(STAMP): $(DEPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[test,mcp]' $(EDITABLES)
	@# pip byte-compiles what it installs but not editable sources: without this, ibgw
	@# recompiles its modules at every start wherever PYTHONDONTWRITEBYTECODE is set
	$(PY) -m compileall -q ibgw fixtures $(foreach p,$(PLUGINS) $(EXAMPLES),$(p)/src)
	@touch $(STAMP)

install: $(STAMP)

DEMO_READS := "accounts" "quote AAPL MSFT SPY" "history AAPL --period 1w --bar 1d" \
	"contracts search apple" "contracts info 265598" \
	"portfolio pnl" "portfolio performance --period 1M" "portfolio allocation" "trades --days 7" \
	"fx rate USD EUR" "options expirations SPY" "options expirations SPX --sec-type IND" \
	"options chain SPY --month APR26 --strikes-around 2 --right C" \
	"greeks SPY --month APR26 --strike 500 --right C" "depth SPY --levels 5" "calendar hours AAPL" \
	"news AAPL --limit 5" "fundamentals AAPL" "transfers AAPL"

# The main job, offline: the embedded fake backend answers like a live gateway.
demo: $(STAMP)
	@export IBGW_STATE_DIR="$$(mktemp -d)"; \
	echo '$$ ibgw --backend fake status'; $(VENV)/bin/ibgw --backend fake status || exit $$?; \
	for cmd in $(DEMO_READS); do \
	  set -- $$cmd; \
	  if $(VENV)/bin/ibgw --help | grep -q "^  $$1 "; then \
	    echo; echo "\$$ ibgw --backend fake $$cmd"; $(VENV)/bin/ibgw --backend fake $$cmd || exit $$?; fi; \
	done; \
	echo; echo '$$ ibgw --backend fake --scenario missing-session status'; \
	$(VENV)/bin/ibgw --backend fake --scenario missing-session status; echo "(exit $$?: manual_action_required)"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint
	$(PY) -m pytest -q -n 2 tests $(foreach p,$(PLUGINS) $(EXAMPLES),$(p)/tests)

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info
