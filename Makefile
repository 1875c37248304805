# The two commands of the README:
#   make demo   set up rnnkit alone, train a small language model on the built-in corpus,
#               score, sample
#   make test   set up rnnkit with its test extra (PyTorch, ONNX, MPI, ...) and run the tests
# Each installs what it needs: the demo never pulls the test extra; its stamp file says the
# plain install is done, the test stamp that the extra is.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# Compiled ahead of time after installing (python -m rnnkit.precompile): the kernels of the
# three cells and the built-in corpus, so the first run neither compiles nor parses.  Redone
# when the kernels or the corpus code change (Numba's cache is keyed on the source files).
PRECOMPILED := $(VENV)/.precompiled

.PHONY: demo test bench setup clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(TEST_STAMP) $(STAMP)

$(PRECOMPILED): $(STAMP) $(wildcard src/rnnkit/kernels/*.py) src/rnnkit/data/corpus.py
	$(BIN)/python -m rnnkit.precompile --cells lstm,gru,rnn
	touch $(PRECOMPILED)

setup: $(PRECOMPILED)

DEMO := runs/demo
demo: $(PRECOMPILED)
	$(BIN)/rnnkit train --out $(DEMO) --force --steps 600 --eval-every 200 --log-every 50
	$(BIN)/rnnkit score $(DEMO) "Return the number of items in the list." "list the of Return items number in the."
	$(BIN)/rnnkit sample $(DEMO) --num 3 --seed 1 --temperature 0.7 --prime "Return the "
	$(BIN)/rnnkit sample $(DEMO) --beam 4 --prime "This module "

test: $(TEST_STAMP) $(PRECOMPILED)
	$(BIN)/python -m pytest tests

bench: $(TEST_STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build src/*.egg-info
