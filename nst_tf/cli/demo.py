"""``make demo``: stylize one sample pair into ``out/`` with quick preview settings.

Online, with no arguments, it fetches a sample photo and painting once with
``keras.utils.get_file`` and the ImageNet VGG19 weights through the Keras cache:

    python -m nst_tf.cli.demo --output_dir=out

Offline, everything can be local files:

    python -m nst_tf.cli.demo --content=photo.jpg --style=painting.jpg \\
        --weights=vgg16_hed_bsds500_notop.weights.h5 --output_dir=out

``--feature_extractor=auto`` (the default) reads a weights file to tell VGG16,
VGG19 and ResNet50 apart by their number of conv kernels (13, 16, 53), so a
VGG16 no-top file works without further flags.
"""

import os
import time

import h5py
import keras
from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf import features
from nst_tf import gatys
from nst_tf import images
from nst_tf.errors import NSTError

# Stable sample images of the TensorFlow style-transfer tutorial.
SAMPLE_CONTENT = (
    "YellowLabradorLooking_new.jpg",
    "https://storage.googleapis.com/download.tensorflow.org/example_images/YellowLabradorLooking_new.jpg",
)
SAMPLE_STYLE = (
    "kandinsky_composition_7.jpg",
    "https://storage.googleapis.com/download.tensorflow.org/example_images/"
    "Vassily_Kandinsky%2C_1913_-_Composition_7.jpg",
)

# Conv kernels per backbone, to recognise a weights file.
_KERNEL_COUNTS = {13: "vgg16", 16: "vgg19", 53: "resnet50"}

# The demo's quick preview settings, and the GatysConfig fields it has flags for.
DEFAULTS = gatys.GatysConfig(image_size=256, num_steps=100)
CONFIG_FLAGS = ("image_size", "num_steps", "weights")

FLAGS = flags.FLAGS
flags.DEFINE_string("content", "", "Content image; empty: download a sample photo.")
flags.DEFINE_string("style", "", "Style image; empty: download a sample painting.")
flags.DEFINE_enum(
    "feature_extractor",
    "auto",
    ["auto", *features.EXTRACTORS],
    "Feature network; auto: vgg19, or what the --weights file holds.",
)
flags.DEFINE_string("output_dir", "out", "Folder for the result.")
config.define_flags(DEFAULTS, only=CONFIG_FLAGS, help_overrides={"num_steps": "L-BFGS iterations."})


def detect_extractor(path):
    """The registered extractor whose conv-kernel count matches a Keras weights file."""
    kernels = []

    def visit(_, node):
        if isinstance(node, h5py.Dataset) and len(node.shape) == 4:
            kernels.append(node.name)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as exc:
        raise NSTError(f"--weights: {path}: not a Keras weights file ({exc})") from None
    try:
        return _KERNEL_COUNTS[len(kernels)]
    except KeyError:
        raise NSTError(
            f"--weights: {path}: {len(kernels)} conv kernels match no known extractor; pass --feature_extractor"
        ) from None


def _image_path(value, sample):
    if value:
        return value
    name, url = sample
    try:
        return keras.utils.get_file(name, url, cache_subdir="nst_tf_samples")
    except Exception as exc:  # get_file raises bare Exception when offline.
        raise NSTError(f"cannot download the sample image {url} ({exc}); pass --content and --style") from None


def main(argv):
    del argv
    extractor = FLAGS.feature_extractor
    if extractor == "auto":
        weights = FLAGS.weights
        is_file = weights.lower() not in ("", "none", "imagenet")
        if is_file and not os.path.isfile(weights):
            raise NSTError(f"--weights: {weights}: no such file")
        extractor = detect_extractor(weights) if is_file else "vgg19"
    options = config.from_flags(DEFAULTS, FLAGS, only=CONFIG_FLAGS, feature_extractor=extractor)
    content = _image_path(FLAGS.content, SAMPLE_CONTENT)
    style = _image_path(FLAGS.style, SAMPLE_STYLE)
    stem = lambda p: os.path.splitext(os.path.basename(p))[0]  # noqa: E731
    output = os.path.join(FLAGS.output_dir, f"{stem(content)}_{stem(style)}.png")

    start = time.monotonic()
    result = gatys.stylize(content, style, options, progress=True)
    images.save_image(output, result)
    height, width = result.shape[:2]
    cli.result(f"{output} {width}x{height} {extractor} {time.monotonic() - start:.1f}s")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
