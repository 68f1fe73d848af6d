# `make demo` and `make test` each install what is missing into .venv, then run.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TF_EXTRA ?= cpu

.PHONY: demo test install clean

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tfdml-train yaml_configs/emoji.yaml $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --doctest-modules tfdml tests $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
