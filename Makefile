# Two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The runtime install (what `make demo` needs).
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The development install (tests, linters).
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	cd examples/concurrency_control && ../../$(BIN)/python sample.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check taskgate tests examples bench soak
	$(BIN)/ruff format --check taskgate tests examples bench soak

# bench/ and soak/ are checked too, but for bench/compare/systems/: each imports its peer
# (Celery, Huey, ...), installed only in that peer's venv.
# The typing test runs from its own directory, where taskgate is importable only through the
# installed package (as in a user's project): it also proves that the install is visible to mypy
# and pyright. pyright runs in strict mode there (tests/typing/pyrightconfig.json); it is told
# the venv's interpreter, and not to look for a newer version of itself on PyPI.
typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy taskgate
	$(BIN)/mypy bench soak --exclude 'bench/compare/systems/'  # systems/: peers' own venvs
	cd tests/typing && $(abspath $(BIN))/mypy --strict --cache-dir $(abspath .mypy_cache) \
		check_types.py
	cd tests/typing && PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(abspath $(BIN))/pyright \
		--pythonpath $(abspath $(BIN))/python

unit: $(VENV)/.installed-dev
	$(BIN)/pytest tests

test: lint typecheck unit docs

# The documentation site (docs/, mkdocs.yml) built into site/; strict: a broken link, a missing
# API reference or a docstring the reference cannot read fails it. Its python blocks run in
# `make unit` (tests/docs/). `make docs-serve` serves it at http://127.0.0.1:8000 with reload.
.PHONY: docs docs-serve
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

BENCH_DB := .taskgate/bench.db

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/throughput.py --backend memory://
	rm -f $(BENCH_DB)*
	$(BIN)/python bench/throughput.py --backend sqlite:///$(BENCH_DB) --tasks 5000
	rm -f $(BENCH_DB)*
	$(BIN)/python bench/throughput.py --backend sqlite:///$(BENCH_DB) --tasks 5000 \
		--runner ProcessRunner --processes 2
	$(BIN)/python bench/throughput.py --backend redis --tasks 10000 \
		--runner ProcessRunner --processes 1
	$(BIN)/python bench/throughput.py --backend redis --tasks 10000 \
		--runner ProcessRunner --processes 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# Side-by-side with Celery, Dramatiq, Huey, RQ and Pynenc on one private Redis: one venv per
# system under bench/compare/.venvs, 3 interleaved repetitions, then bench/embedded.py; writes
# BENCHMARKS.md, bench/compare/throughput.png and cpu_per_task.png (35 to 65 minutes on 2 cores,
# by the machine's speed). `run.py --quick` checks that it all works in a few minutes.
.PHONY: bench-compare
bench-compare: $(VENV)/.installed-dev
	$(BIN)/python bench/compare/run.py --python $(PYTHON)

# Soak test (not part of `make test`): 3 CLI runner processes x 4 threads, 5,000 invocations on
# 50 keys with random failures and retries, a runner SIGKILLed every 2-3 s; SQLite, then Redis.
# Exits non-zero if any check fails; bounded by a hard limit per backend. See soak/README.md.
.PHONY: soak
soak: $(VENV)/.installed-dev
	$(BIN)/python soak/soak.py

# The web monitor on a store of 100,000 finished and 10,000 waiting invocations, on SQLite then
# Redis: per-page latency, backend operations per page, runner throughput with a monitor open
# (5 to 10 minutes on 2 cores). Figures go in BENCHMARKS.md by hand.
.PHONY: bench-monitor
bench-monitor: $(VENV)/.installed-dev
	$(BIN)/python bench/monitor.py

# The monitor's screenshots in the docs and the README (docs/screenshots/*.png): a runner and a
# monitor on a scratch SQLite store, opened in headless Chromium (/usr/bin/chromium, /usr/bin/chromedriver).
.PHONY: screenshots
screenshots: $(VENV)/.installed-dev
	$(BIN)/python bench/screenshots.py
