# ocrq developer targets. `make demo` and `make test` are the README's first two commands.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
EVAL ?= ../shared/eval

OPTIMUM_VENV ?= $(HOME)/.cache/ocrq/optimum-venv

.PHONY: install demo test lint format bench bench-enqueue bench-trocr bench-mlx optimum-venv soak samples clean

# torch is pinned first, explicitly: the CPU build of 2.13.0 (a local wheel on our
# machines) keeps pip from pulling a multi-GB CUDA build through transformers.
install:
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev,export,mlx,bench,ocrmypdf,serve]"

demo:
	$(PIP) install -q -e .
	ocrq run samples --pattern '*.png' --db sqlite:///results.db -o results.csv
	@echo "results: results.db, results.csv"

test: install
	$(PYTHON) -m pytest -q -m "not soak" --timeout=900

lint:
	ruff check .
	ruff format --check .

format:
	ruff format .
	ruff check --fix .

bench:
	ocrq bench $(EVAL)/lines $(EVAL)/pages/sroie $(EVAL)/pages/oldbooks $(EVAL)/pages/tesseract_test

bench-enqueue:
	$(PYTHON) scripts/bench_enqueue.py --jobs 10000

# The optimum row runs only when its venv exists (make optimum-venv).
bench-trocr:
	$(PYTHON) scripts/bench_trocr.py \
	  $(if $(wildcard $(OPTIMUM_VENV)/bin/python),--optimum-python $(OPTIMUM_VENV)/bin/python)

# optimum-onnx needs transformers<4.58 and ocrq runs 5.x: the peer gets its own venv.
optimum-venv:
	$(PYTHON) -m venv $(OPTIMUM_VENV)
	$(OPTIMUM_VENV)/bin/pip install -q "torch==2.13.0"
	$(OPTIMUM_VENV)/bin/pip install -q "transformers<4.58" "optimum[onnxruntime]==2.1.0" pillow

bench-mlx:
	$(PYTHON) scripts/bench_mlx.py

soak:
	$(PYTHON) -m pytest -q -m soak --timeout=3600

samples:
	$(PYTHON) scripts/make_samples.py

clean:
	rm -f results.db results.db-wal results.db-shm results.csv
