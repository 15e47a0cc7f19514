# The two commands a newcomer needs are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# Some machines set PYTHONDONTWRITEBYTECODE; without cached bytecode every command
# recompiles its imports (seconds per CLI call), so this project's commands write it.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test install lint format types unit bench chaos soak redis postgres chromium lock clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==0.13.9"

# The lock file pins every package; the project itself is installed editable on top of it.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/cartnudge serve --host $(HOST) --port $(PORT)

# The tests and benchmarks start a private PostgreSQL from the machine's server binaries
# (cartnudge.testing.postgres looks where this does): Debian's postgresql when none is there.
postgres:
	@[ -n "$$PG_BINDIR" ] || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq postgresql; }

# The dashboard's browser tests drive Debian's chromium through Playwright (never a
# browser Playwright downloads).
chromium:
	@[ -x /usr/bin/chromium ] || { apt-get update -qq && apt-get install -y -qq chromium; }

test: install postgres chromium
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# The peers benchmark compares with Celery on Redis: Debian's redis-server, started by the bench.
redis:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }

bench: install redis postgres
	$(BIN)/python -m bench.run

# The fault and fuzz suites at full length (`make test` runs them short).
chaos: install postgres
	CARTNUDGE_CHAOS=full $(BIN)/pytest -q -p no:cacheprovider --timeout 3600 tests/chaos tests/fuzz

# Ten minutes at 1,000 events/s with reminders flowing; not part of CI.
soak: install
	$(BIN)/python -m bench.soak

lock: $(BIN)/uv
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra dev --extra bench pyproject.toml -o requirements.lock

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
