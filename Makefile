# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install the project (pinned by constraints.txt).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Tests run inside a private network namespace with loopback only, so Ray and
# every server bind 127.0.0.1 and nothing leaves the machine. A non-root user
# needs a user namespace too (-r).
UNSHARE := $(if $(filter 0,$(shell id -u)),unshare -n,unshare -rn)
LOOPBACK_ONLY := $(UNSHARE) sh -c 'ip link set lo up && exec "$$0" "$$@"'
TEST_ENV := RAY_USAGE_STATS_ENABLED=0 PYTHONDONTWRITEBYTECODE=1
PYTEST_ARGS ?=

.PHONY: install install-browser demo lint test test-fast bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/textune run tune_jobs/configs/quickstart.yaml --resume

# The report test opens a page in Debian's headless Chromium; as root on a machine without it, install it.
install-browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver with apt-get (for the report's browser test)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "chromium and chromium-driver are missing: install them (apt-get install chromium chromium-driver) for the report test"; fi

# Lint, format check and type check (config in pyproject.toml): seconds once mypy's cache (.mypy_cache) is warm,
# about a minute on a fresh clone.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite (what .ci/run runs) is linted first; a run of chosen tests (PYTEST_ARGS) skips the lint.
test: $(STAMP) install-browser $(if $(PYTEST_ARGS),,lint)
	$(TEST_ENV) $(LOOPBACK_ONLY) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit loop's tier: every test not marked slow (nothing starts Ray or a server, no training beyond a few
# steps), under 2 minutes on 2 cores, in the same loopback-only namespace. `make test` stays the whole suite.
test-fast: $(STAMP)
	$(TEST_ENV) $(LOOPBACK_ONLY) $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Every benchmark in turn (long: about an hour on 2 cores); `make bench BENCHMARKS=bench_trainer` runs one.
# bench_search_sim and bench_default_search replay the committed learning-curve tables (benchmarks/tables/, recorded
# by benchmarks.record_table). Left out: bench_trainer_gpu (needs a CUDA GPU) and bench_rank_agreement (give it a
# table with --table, or --smoke).
BENCHMARKS ?= bench_prepare bench_reader_rss bench_trainer bench_trainer_hf bench_quality bench_folds bench_slots \
	bench_search bench_search_sim bench_replay_fidelity bench_default_search bench_cluster_fill bench_importance bench_faults bench_report
bench: $(STAMP)
	set -e; for name in $(BENCHMARKS); do $(TEST_ENV) $(LOOPBACK_ONLY) $(BIN)/python -m benchmarks.$$name; done

clean:
	rm -rf $(VENV) .pytest_cache
