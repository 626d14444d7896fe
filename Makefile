# The README's two commands: `make run` (main job) and `make test`. Both create/refresh the venv first;
# the venv step is idempotent: it reinstalls only when requirements.lock or pyproject.toml change.
SHELL := /bin/bash
PY ?= python3.11
VENV ?= .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv browser run test test-fast bench lock clean mutation

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip==26.3
	bash scripts/install_torch.sh $(VENV)/bin/python -q     # the CPU wheel: local, else $$TORCH_INDEX
	$(VENV)/bin/python -m pip install -q -r requirements.lock
	$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*; touch $@; echo "venv ready: $(VENV)"

# the output passes through step_times.py: the run ends with a table of the minutes each step took
run: venv
	$(VENV)/bin/python scripts/step_times.py --log runs/step_times.tsv -- bash scripts/run_main.sh

# Debian's chromium for the page tests (tests/integration/test_ui_page.py): installed once, ~30 s; a no-op after.
browser:
	bash scripts/install_browser.sh

test: venv browser
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/python -m pytest -q -m "not slow and not integration" $(PYTEST_ARGS)

bench: venv
	$(VENV)/bin/python scripts/bench_model.py

# Mutation testing (mutmut) of metrics, canary routing + rollout decision, registry promotion, response
# encoding, config + schema validation; scratch copy in runs/mutation/ (~13 min on one core beside other
# work; .ci/run runs it after the suite).
mutation: venv
	OMP_NUM_THREADS=1 $(VENV)/bin/python scripts/mutation.py --workers $${MUTATION_WORKERS:-2} --fail-under 85

# Re-resolve the lock from requirements.in (maintainers only; ~5 min of pip backtracking).
lock:
	rm -rf /tmp/faceparse-lock && $(PY) -m venv /tmp/faceparse-lock
	/tmp/faceparse-lock/bin/pip install -q -r requirements.in
	/tmp/faceparse-lock/bin/pip freeze --exclude-editable | grep -v '^faceparse' > requirements.lock

clean:
	rm -rf $(VENV) runs

# Container images, built for real with podman (docs/containers.md): the train (kfp components, training
# pods; CPU torch here), serve (TorchServe) and mlflow images as localhost/faceparse-{train,serve,mlflow}:<version>,
# also tagged with their published ghcr.io names; a local Debian 12 base made once with debootstrap. Installs
# Debian's podman/runc/debootstrap once (root). Cold ~14 min on 2 cores; a code-only change rebuilds in ~15 s.
# FACEPARSE_IMAGE for the kfp compile: runs/images.env. images-check runs each image offline.
.PHONY: images images-check
images:
	bash scripts/build_images.sh $(IMAGES)

images-check:
	bash scripts/build_images.sh check
