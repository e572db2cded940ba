"""Translate images with a trained CycleGAN generator, at full size (``nst-translate``).

The model is a ``nst-train-cyclegan`` output dir. The generator is fully
convolutional, so images keep their size: odd sizes are reflection-padded to a
multiple of 4 inside the model and cropped back. A folder is processed in
batches of same-sized images; each output is written atomically as
``<output>/<input name>.png`` (or ``format="jpg"``).
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from nst_tf import images
from nst_tf.config import option
from nst_tf.errors import NSTError
from nst_tf.progress import ProgressBar
from nst_tf.training import base

DIRECTIONS = ("a2b", "b2a")
FORMATS = ("png", "jpg")


@dataclasses.dataclass
class TranslateConfig:
    model: str = option(help="Training output dir of nst-train-cyclegan.")
    input: str = option(help="An image file or a folder of images (searched recursively).")
    output: str = option(help="Output folder.")
    direction: str = option("a2b", "a2b uses generator_a2b (A -> B), b2a the inverse.", choices=DIRECTIONS)
    batch_size: int = option(4, "Images per forward pass (same-sized images are batched).", min=1)
    max_side: int = option(0, "Resize so the longest side is at most this first (0: full size).", min=0)
    format: str = option("png", "Output format.", choices=FORMATS)

    def __post_init__(self):
        for name, allowed in (("direction", DIRECTIONS), ("format", FORMATS)):
            if getattr(self, name) not in allowed:
                raise NSTError(f"--{name}: must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")


def _batches(paths, batch_size, max_side):
    """Yield ``(paths, images)`` runs of at most ``batch_size`` consecutive same-sized images."""
    run_paths, run_images = [], []
    for path in paths:
        image = images.load_image(path, min_side=4)
        if max_side and max(image.shape[:2]) > max_side:
            image = images.resize_longest_side(image, max_side)
        if run_images and (image.shape != run_images[0].shape or len(run_images) == batch_size):
            yield run_paths, run_images
            run_paths, run_images = [], []
        run_paths.append(path)
        run_images.append(image)
    if run_images:
        yield run_paths, run_images


def translate(config):
    """Translate ``config.input`` into ``config.output``; returns the list of written files."""
    if os.path.isdir(config.input):
        paths = images.list_images(config.input)
        if not paths:
            raise NSTError(f"--input: {config.input}: no image files")
        root = config.input
    elif os.path.isfile(config.input):
        paths, root = [config.input], os.path.dirname(config.input)
    else:
        raise NSTError(f"--input: {config.input}: no such file or directory")
    description = base.read_model_config(config.model)
    name = f"generator_{config.direction}"
    if name not in description.get("models", {}):
        raise NSTError(f"--direction: {config.model} has no {name} (trained with --direction={config.direction[::-1]}?)")
    generator = base.load_trained_model(config.model, name)
    forward = tf.function(lambda x: generator(x, training=False), reduce_retracing=True)

    written = []
    with ProgressBar(len(paths), f"translate {config.direction}") as bar:
        for batch_paths, batch in _batches(paths, config.batch_size, config.max_side):
            out = forward(tf.constant(np.stack(batch)) * 2.0 - 1.0)
            out = (out.numpy() + 1.0) / 2.0
            for path, image in zip(batch_paths, out):
                stem = os.path.splitext(os.path.relpath(path, root))[0]
                target = os.path.join(config.output, f"{stem}.{config.format}")
                images.save_image(target, image)
                written.append(target)
            bar.update(len(written))
    return written

