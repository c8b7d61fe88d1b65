# Two commands do everything on a fresh machine:
#   make run    set up, then open the dashboard on the default run
#   make test   set up, then run every test (fast, slow and real-browser)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast browser-deps lint default-model bench clean

setup: $(STAMP)

# torch is pinned to the CPU wheel on machines without CUDA; an unpinned torch would pull a
# multi-GB CUDA build. On a CUDA machine the same pin resolves to a CUDA-enabled wheel.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/streamlit run explorer/Home.py

# Chromium for the browser tests, from Debian's packages (Playwright's own download is not used).
browser-deps:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: setup browser-deps lint
	$(VENV)/bin/pytest -m "" -q

test-fast: setup
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Reproduce the shipped default run: kitchen data, training, naming, index. The recipe is the
# `kitchen` preset (ivae/presets.py; `ivae presets` prints it): the density-ratio objective
# alone, in which the encoder's Jacobian cancels, on photos under random flips and quarter
# turns; docs/experiments.md#how-long-how-fast-on-which-images-the-kitchen-schedule.
default-model: setup
	$(VENV)/bin/ivae data kitchen --out data/kitchen --seed 0
	rm -rf assets/default-run
	$(VENV)/bin/ivae train --data data/kitchen --preset kitchen --out assets/default-run
	$(VENV)/bin/ivae name assets/default-run
	$(VENV)/bin/ivae index assets/default-run
	cp data/kitchen/dataset.json assets/default-run/dataset.json

bench: setup
	$(PY) -m bench.identifiability

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
