# ssm-aimc: the two contract commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WORKDIR ?= runs/demo

.PHONY: demo test lint bench reproduce clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

## The whole pipeline on scikit-learn digits: train the default S4D (float, 12 epochs),
## fine-tune it with QAT (4-bit weights, 8-bit activations) and noise-aware training on
## PCM-like noise (3 epochs, evaluated on 5 chips), then deploy it on 5 simulated PCM and
## 5 RRAM chips (step by step, 8-bit DAC/ADC) and print the cost, accuracy and energy
## tables. Sized to finish in about 4 minutes with the install on a 2-core CPU (README);
## the configs' own epochs (60 and 20) are the README's result tables. Again into the same WORKDIR resumes (or re-evaluates);
## `make demo WORKDIR=runs/x` for a new run.
demo: $(STAMP)
	$(PY) launch.py --config=configs/default.py --workdir=$(WORKDIR)/float --config.num_epochs=12
	$(PY) launch.py --config=configs/noise_aware_w4a8.py --workdir=$(WORKDIR)/qat_noise_aware \
	  --config.init_checkpoint=$(WORKDIR)/float --config.num_epochs=3 \
	  --config.hardware.eval_seeds=5 --config.hardware.seeds_per_call=5
	$(PY) launch.py --config=configs/noise_aware_w4a8.py --workdir=$(WORKDIR)/qat_noise_aware \
	  --config.deploy.seeds=5 --mode=deploy

## The test suite, two workers, each taking whole files, longest first (tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist=loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(VENV)/bin/ruff check ssm_aimc tests configs launch.py bench

## The paper's claims (configs/claims/c*.py; C1 to C4 by the authors' protocol and by ours),
## one after another on one shared models folder (the float model is trained once), then
## CLAIMS.md with a verdict and a figure per claim (figures in docs/claims/).
## The long-sequence case, the authors' C1 to C4 on mnist5k (L = 784) into CLAIMS_mnist5k.md:
##   make reproduce VARIANT=:mnist5k
## Paper scale on a GPU:
##   make reproduce VARIANT=:paper FLAGS=--config.data.data_dir=/path/to/mnist
VARIANT   ?=
SUFFIX    := $(subst :,_,$(VARIANT))
CLAIMS    ?= runs/claims$(SUFFIX)
CLAIMS_MD ?= CLAIMS$(SUFFIX).md
FLAGS     ?=
ALL_CLAIMS := c1_cost c1_qs4d c2_size_vs_precision c2_qs4d c3_qs4d c3_robustness c4_qs4d c4_pruning c5_deployment
VARIANT_CLAIMS_mnist5k := c1_qs4d c2_qs4d c3_qs4d c4_qs4d
CLAIM_CONFIGS ?= $(or $(VARIANT_CLAIMS$(SUFFIX)),$(ALL_CLAIMS))
reproduce: $(STAMP)
	for c in $(CLAIM_CONFIGS); do \
	  $(PY) launch.py --config=configs/claims/$$c.py$(VARIANT) --workdir=$(CLAIMS)/$$c \
	    --mode=claim --config.claim.models_dir=$(CLAIMS)/models $(FLAGS) || exit 1; \
	done
	$(PY) -m ssm_aimc.claims --runs=$(CLAIMS) --out=$(CLAIMS_MD) --figures=docs/claims$(SUFFIX)

## Time per training step of every recurrence method (10-20 minutes; see BENCHMARKS.md).
bench: $(STAMP)
	$(PY) bench/bench_recurrence.py

clean:
	rm -rf $(VENV) runs *.egg-info
