"""nst-translate: full-size CycleGAN translation of a file or a folder, as a subprocess."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from nst_tf.models.cyclegan import ResnetGenerator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A training output dir holding only generator_a2b, as a --direction=a2b run leaves it."""
    out = tmp_path_factory.mktemp("cyclegan_model")
    generator = ResnetGenerator(ngf=4, n_blocks=1, name="generator_a2b")
    tf.train.CheckpointManager(tf.train.Checkpoint(generator_a2b=generator), str(out / "checkpoints"), 1).save()
    description = {
        "method": "cyclegan",
        "models": {"generator_a2b": {"class_name": "ResnetGenerator", "config": generator.get_config()}},
        "style_names": [],
    }
    (out / "model_config.json").write_text(json.dumps(description))
    return str(out), generator


def run_translate(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "nst_tf.cli.translate", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_translate_keeps_odd_sizes_and_matches_the_generator(model_dir, tmp_path):
    folder, generator = model_dir
    rng = np.random.default_rng(0)
    inputs = {"odd.png": (37, 45), "tall.png": (61, 22), "sub/same.png": (37, 45)}
    for name, (h, w) in inputs.items():
        os.makedirs(os.path.dirname(tmp_path / "in" / name), exist_ok=True)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(tmp_path / "in" / name)
    proc = run_translate(f"--model={folder}", f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}",
                         "--batch_size=2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"translated 3 image(s) a2b -> {tmp_path / 'out'}"
    for name, (h, w) in inputs.items():
        out = np.asarray(Image.open(tmp_path / "out" / name)).astype(np.float32) / 255.0
        assert out.shape == (h, w, 3)
        source = np.asarray(Image.open(tmp_path / "in" / name)).astype(np.float32) / 255.0
        expected = (generator(source[None] * 2.0 - 1.0).numpy()[0] + 1.0) / 2.0
        np.testing.assert_allclose(out, expected, atol=1.5 / 255)


def test_translate_single_file_and_missing_direction(model_dir, tmp_path):
    folder, _ = model_dir
    Image.fromarray(np.full((33, 35, 3), 128, np.uint8)).save(tmp_path / "one.jpg")
    proc = run_translate(f"--model={folder}", f"--input={tmp_path / 'one.jpg'}", f"--output={tmp_path / 'o'}",
                         "--format=jpg")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "o" / "one.jpg").size == (35, 33)
    proc = run_translate(f"--model={folder}", "--direction=b2a", f"--input={tmp_path / 'one.jpg'}",
                         f"--output={tmp_path / 'b'}")
    assert proc.returncode == 1
    assert "has no generator_b2a" in proc.stderr.strip().splitlines()[-1]
    assert not os.path.exists(tmp_path / "b")
