"""Tiny synthetic data and configs for the feed-forward training, distribution and inference tests,
and training dirs as the trainers leave them."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from nst_tf import images
from nst_tf.data import PhotoDataConfig
from nst_tf.losses import LossConfig
from nst_tf.training import arbitrary
from nst_tf.training import feedforward as ff

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smooth_image(rng, height, width):
    """A random smooth colour image: a few sinusoids, so photos and styles differ in texture."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 12, size=3)
        channels.append(0.5 + 0.45 * np.sin(2 * np.pi * (fx * x + fy * y) + phase))
    return np.stack(channels, axis=-1).astype(np.float32)


def make_photos(folder, count=8, seed=0, size=(40, 48)):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        images.save_image(os.path.join(folder, f"photo{i}.png"), smooth_image(rng, *size))
    return str(folder)


def make_styles(folder, count=2, seed=100):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"style{i}.png")
        pattern = smooth_image(rng, 48, 48)
        images.save_image(path, np.clip(pattern * rng.uniform(0.3, 1.0, size=3), 0, 1))
        paths.append(path)
    return paths


def logged_scalars(log_dir):
    """``{tag: {step: value}}`` of the scalars (not the images) in a run's TensorBoard folder."""
    scalars = {}
    for name in os.listdir(log_dir):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


def mock_tfds_photos(rng, count=5):
    """``tfds.testing.mock_data`` whose ``train`` split is ``count`` random 48x40 photos, encoded."""
    # Imported here: the subprocess scripts that import these helpers do not need tfds.
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    encoded = [images.encode_image(rng.random((48, 40, 3))) for _ in range(count)]

    def as_dataset(self, split, decoders=None, **kwargs):
        del self, kwargs
        assert split == "train" and "image" in decoders  # the photos stay encoded
        return tf.data.Dataset.from_tensor_slices({"image": encoded})

    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


# The settings the tiny feed-forward and AdaIN runs share.
TINY_RUN = dict(width=0.125, batch_size=2, max_steps=4, checkpoint_every=100, log_every=2, image_every=0)


def tiny_config(photos, styles, output_dir, **kwargs):
    """A feed-forward run that trains in well under a second per step on one CPU core."""
    settings = dict(TINY_RUN, num_residual_blocks=1, learning_rate=1e-2)
    settings.update(kwargs)
    return ff.FeedForwardConfig(
        output_dir=str(output_dir),
        style_images=list(styles),
        data=PhotoDataConfig(train_dir=photos, image_size=32),
        loss=LossConfig.johnson(weights=None),
        style_size=48,
        **{"multistyle": len(styles) > 1, **settings},
    )


def tiny_fast_runs(root):
    """``root/runs`` holding one tiny fast net (``runs/fast``), trained two steps on tiny photos."""
    photos = make_photos(os.path.join(root, "photos"), count=4)
    ff.train(
        tiny_config(
            photos, make_styles(os.path.join(root, "styles"), count=1), os.path.join(root, "runs", "fast"), max_steps=2
        )
    )
    return os.path.join(root, "runs")


def tiny_arbitrary_config(photos, style_dirs, output_dir, **kwargs):
    """An AdaIN run (random VGG16, an eighth-width decoder, 32 px crops) that trains in a fraction of a second per step."""
    settings = dict(TINY_RUN, loss=LossConfig.huang(feature_extractor="vgg16", weights=None), learning_rate=1e-3)
    settings.update(kwargs)
    return arbitrary.ArbitraryConfig(
        output_dir=str(output_dir),
        content_dir=photos,
        style_dirs=[style_dirs] if isinstance(style_dirs, str) else list(style_dirs),
        data=PhotoDataConfig(image_size=32, load_size=40),
        **settings,
    )


def mirrored_script(setup, trained):
    """Code for :func:`run_python`: two logical CPUs (before TensorFlow starts), ``setup`` (imports
    and arguments), then ``trained`` (``def trained(name, strategy, steps)`` -> ``(trainer, weights)``)
    run for 0 and 3 steps on one device and 3 under MirroredStrategy. Prints one JSON line: replicas,
    both runs' data positions, the largest weight update and the largest one-device/mirrored difference,
    and both over all weights (L2 norms)."""
    return (
        """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
        + setup
        + """
from nst_tf.training import base
strategy = base.make_strategy()
assert isinstance(strategy, tf.distribute.MirroredStrategy), type(strategy)
"""
        + trained
        + """
_, start = trained("init", tf.distribute.get_strategy(), 0)
single, one = trained("single", tf.distribute.get_strategy(), 3)
mirrored, two = trained("mirrored", strategy, 3)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "position": [int(single.data_position.numpy()), int(mirrored.data_position.numpy())],
    "update": max(float(np.abs(a - b).max()) for a, b in zip(one, start)),
    "difference": max(float(np.abs(a - b).max()) for a, b in zip(one, two)),
    "update_norm": float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(one, start)))),
    "difference_norm": float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(one, two)))),
}))
"""
    )


def write_training_dir(path, method, named_models, style_names=()):
    """A training output dir as training.base writes it: checkpoints/ + model_config.json."""
    checkpoint = tf.train.Checkpoint(**named_models)
    tf.train.CheckpointManager(checkpoint, os.path.join(path, "checkpoints"), max_to_keep=1).save()
    description = {
        "method": method,
        "models": {
            name: {"class_name": type(model).__name__, "config": model.get_config()}
            for name, model in named_models.items()
        },
        "style_names": list(style_names),
    }
    with open(os.path.join(path, "model_config.json"), "w", encoding="utf-8") as f:
        json.dump(description, f)
    return str(path)


def run_command(argv, cwd=REPO, timeout=300):
    """Run ``argv`` with TensorFlow's C++ logging off, capturing its text output."""
    quiet = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=quiet, capture_output=True, text=True, timeout=timeout)


def python_command(code, *args, env=None):
    """``(argv, env)`` running ``code`` in a fresh quiet interpreter that can import these helpers."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.path.join(REPO, "tests"), **(env or {})}
    return [sys.executable, "-c", code, *map(str, args)], full_env


def run_python(code, *args, timeout=300):
    """Run ``code`` with ``args`` in a fresh interpreter (TF device setup must precede TF's start)."""
    argv, env = python_command(code, *args)
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
