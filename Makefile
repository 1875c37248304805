# The two commands of the README:
#   make demo   set up, train a small language model on the built-in corpus, score, sample
#   make test   set up and run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

DEMO := runs/demo
demo: $(STAMP)
	$(BIN)/rnnkit train --out $(DEMO) --force --steps 600 --eval-every 200 --log-every 50
	$(BIN)/rnnkit score $(DEMO) "Return the number of items in the list." "list the of Return items number in the."
	$(BIN)/rnnkit sample $(DEMO) --num 3 --seed 1 --temperature 0.7 --prime "Return the "
	$(BIN)/rnnkit sample $(DEMO) --beam 4 --prime "This module "

test: $(STAMP)
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build src/*.egg-info
