# relmine: `make run` rebuilds the pipeline on the sample corpus, `make test` runs the suite.
# Every target is idempotent; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.relmine-cache/torchinductor
APT_PACKAGES := apertium apertium-eng-spa tesseract-ocr wordnet-base
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
BASE ?= HEAD~1
PLOTS_TEMPLATE := .dvc/plots-offline.html

help:  ## list the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v uv >/dev/null || python3 -m pip install -q uv
	@test -x $(PY) || uv venv -q -p 3.11 $(VENV)
	# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on our machines) nothing caches
	# .pyc files, and every process would recompile prefect, dvc, torch... (2 s more per flow)
	VIRTUAL_ENV=$(VENV) uv pip install -q --compile-bytecode $(FIND_LINKS) -r requirements.lock
	@touch $@

system-deps:  ## install the Debian packages (Apertium, Tesseract, WordNet) where missing
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "warning: could not install $$missing (not root?): augmentation/OCR tests will skip"; \
	fi

install: $(VENV)/.installed system-deps $(PLOTS_TEMPLATE)  ## create .venv from requirements.lock and install system packages

# `dvc plots show` renders with this template (.dvc/config plots.html_template): vega inlined, no CDN
$(PLOTS_TEMPLATE): flows/diff.py $(wildcard flows/vendor/*.js) | $(VENV)/.installed
	@$(PY) -m flows.diff --write-template $@ >/dev/null

pull: install  ## fetch the sample corpus and gazetteers from the DVC remote
	$(VENV)/bin/dvc pull -q data/papers.dvc data/gazetteers.dvc

run: pull  ## run the whole pipeline (dvc repro) with a local Prefect server
	$(PY) -m flows.server run -- $(VENV)/bin/dvc repro
	@$(PY) -c 'import json; m = json.load(open("reports/metrics.json")); \
	  print("test split (%d pairs, labelled by the weak labels: agreement with them): accuracy %.3f, micro-F1 %.3f, " \
	        "macro-F1 %.3f (positive relations); all metrics: dvc metrics show, plots: dvc plots show" \
	        % (m["n"], m["accuracy"], m["micro_f1"], m["macro_f1"]))'
	@$(PY) -m stages.gold reports/metrics_gold.json

test: install  ## run the test suite
	$(PY) -m pytest -q

bench: pull  ## benchmark every stage; writes reports/bench/*.json and reports/bench.md
	$(PY) -m flows.server run -- $(PY) -m benchmarks.run

diff: install  ## metrics/params/plots diff against BASE (default HEAD~1) into reports/diff/
	$(PY) -m flows.diff --base $(BASE)

plots: install  ## confusion matrix and training curves as one offline page (dvc_plots/index.html)
	$(VENV)/bin/dvc plots show

server: install  ## start a persistent local Prefect server (127.0.0.1)
	$(PY) -m flows.server start

server-stop:  ## stop the persistent local Prefect server
	$(PY) -m flows.server stop

clean:  ## stop the local Prefect server, remove caches and its state (not the DVC cache)
	-@test -x $(PY) && $(PY) -m flows.server stop
	rm -rf .relmine-cache .prefect .pytest_cache

.PHONY: help system-deps install pull run test bench diff plots server server-stop clean
