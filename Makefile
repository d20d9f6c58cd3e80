VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: chat test bench clean redis-server

$(PY):
	python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip > /dev/null 2>&1 || true

# install output goes to a log, shown only if the install fails
$(STAMP): pyproject.toml | $(PY)
	@echo "installing tether into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install -q -e . > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	@echo "installing tether with its test extra into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install -q -e '.[test]' > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@ $(STAMP)

chat: $(STAMP)
	@$(VENV)/bin/tether chat

test: $(TEST_STAMP) redis-server
	$(PY) -m pytest

# The Redis store's tests start a real redis-server; Debian has it, PyPI does not.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { echo "installing redis-server for the Redis store tests"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || \
	  echo "could not install redis-server: install it to run tests/test_redis_store.py"; }

bench: $(TEST_STAMP)
	$(PY) bench/store.py
	$(PY) bench/context.py
	$(PY) bench/turn.py
	$(PY) bench/cli.py

clean:
	rm -rf $(VENV) build *.egg-info
