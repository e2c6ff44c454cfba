# Everything a fresh machine needs, one command each:
#   make lessons   install, then run every lesson notebook in tiny mode (executed copies in executed/)
#   make test      install, then the linter, the unit tests and every notebook under nbval (exercise answers
#                  blank), then every notebook with the reference solutions (tools/run_solutions.py)
#   make rehearse  install, then every notebook in full mode from a local mirror, smoke-sized (tools/rehearse.py)
#   make gpu-check install, then on a CUDA machine: every notebook in full smoke mode on the GPU, the benchmark's
#                  rows on the GPU, torchrun with nccl (2+ GPUs); one table, exit 1 on a failure (tools/gpu_check.py)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install lessons test rehearse gpu-check clean

install: $(STAMP)

# Re-install only when the pinned requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

lessons: $(STAMP)
	$(PY) tools/run_lessons.py --out executed

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) tools/add_exercises.py --check
	MPLBACKEND=Agg $(PY) -m pytest tests nbs --nbval-lax --nbval-current-env --durations=25
	MPLBACKEND=Agg $(PY) tools/run_solutions.py

rehearse: $(STAMP)
	MPLBACKEND=Agg $(PY) tools/rehearse.py

gpu-check: $(STAMP)
	MPLBACKEND=Agg $(PY) tools/gpu_check.py

clean:
	rm -rf executed .pytest_cache
