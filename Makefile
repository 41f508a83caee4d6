# Two commands do all set-up on a fresh machine:
#   make demo   - create/update .venv, then run the main job against the embedded simulator
#   make test   - create/update .venv, then run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Most tests wait on renders, rate windows and servers, not the CPU: two pytest workers
# (one test file each at a time, so a file's fixtures stay in one process) halve the wall.
TEST_JOBS ?= 2
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)

.PHONY: venv test demo lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

test: venv
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

demo: venv
	$(PY) -m prefect_hailuo.flows.demo

bench: venv
	$(PY) -m pip install --quiet -e ".[test,bench]"
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) out .pytest_cache
