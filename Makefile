# embedcli — every target sets up what it needs (a .venv next to this file) on first use.
#   make demo    run the whole pipeline on sample_data/ and show the result
#   make test    run the test suite
# Override the interpreter or the torch pin:  make test PYTHON=python3.12 TORCH=2.5.1
# A CPU-only machine without a local torch wheel: the small CPU build from PyTorch's own index,
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
TORCH  ?= 2.13.0
TORCH_INDEX ?=
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(TORCH)
OUT    ?= build/demo
MODELS ?= .cache/models

.PHONY: install demo test lint bench clean help models

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'
	@echo "  make install | lint | bench | models | clean"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==$(TORCH)" \
		$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,fast,hf,s3]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	@mkdir -p $(OUT)
	$(BIN)/embedcli tokenize sample_data/ -o $(OUT)/corpus.tokens.safetensors
	$(BIN)/embedcli batch $(OUT)/corpus.tokens.safetensors -o $(OUT)/corpus.windows.safetensors \
		--max-length 4 --stride 4 --batch-size 8
	$(BIN)/embedcli embed $(OUT)/corpus.windows.safetensors -o $(OUT)/corpus.embeddings.safetensors \
		--dim 256 --seed 123
	$(BIN)/embedcli inspect $(OUT)/corpus.embeddings.safetensors --preview 2

# The default run skips nothing; tests marked slow are still fast enough for a 2-core CI box.
# One worker process per core (pytest-xdist): 2.5-3.5 minutes on 2 cores (3.7-5.3 with a fresh clone's set-up), measured 2026-12-06.
test: $(STAMP) models
	EMBEDCLI_MODELS=$(MODELS) $(BIN)/python -m pytest -q -n auto --dist loadgroup

# Real tokenizer files (Llama 3 and 4, Qwen, Mistral v3) out of their packages' wheels, from the registry
# only; without it the tests that need them skip.
models: $(STAMP)
	@$(BIN)/python benchmarks/models.py $(MODELS)

lint: $(STAMP)
	$(BIN)/ruff check embedcli tests benchmarks
	$(BIN)/ruff format --check embedcli tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
