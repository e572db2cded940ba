"""nst-stylize: stylize an image by optimisation (Gatys et al.) or with a trained net.

    nst-stylize --content=photo.jpg --style=painting.jpg --output=out.png
    nst-stylize --flagfile=configs/gatys_preview.flags --content=... --style=...
    nst-stylize --model=runs/starry --content=photos/ --output=stylized/
    nst-stylize --model=runs/adain --content=photos/ --style=painting.jpg --alpha=0.7

Every other flag is a field of :class:`nst_tf.gatys.GatysConfig` (same name,
same default). Quiet by default: one progress bar on stderr, one result line
on stdout; a bad input prints one line and exits with status 1 without
writing anything.
"""

import os
import sys
import time

import keras
from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf import fileio
from nst_tf import gatys
from nst_tf import images
from nst_tf import inference
from nst_tf import precision
from nst_tf.errors import NSTError

FLAGS = flags.FLAGS

flags.DEFINE_string("content", None, "Content image (with --model: an image or a folder).")
flags.DEFINE_multi_string(
    "style", None, "Style image; repeat for several styles (with --model: an arbitrary-style net's paintings)."
)
flags.DEFINE_string(
    "output",
    None,
    "Output image (.png/.jpg); default <content>_<style>.png in the current folder. With --model: a file or a folder.",
)
flags.DEFINE_string(
    "model",
    None,
    "Trained feed-forward model directory (nst-train-fast / nst-train-multistyle / nst-train-arbitrary); "
    "skips optimisation.",
)
config.define_flags(gatys.GatysConfig)
# An arbitrary-style --model's own controls: InferenceConfig's fields of these names.
config.define_flags(inference.InferenceConfig, only=("alpha", "mask", "style_size"))


def default_output(content, styles):
    stem = lambda p: os.path.splitext(os.path.basename(p))[0]  # noqa: E731
    return f"{stem(content)}_{'+'.join(stem(s) for s in styles)}.png"


def check_output(output):
    """Before any work: ``output`` is an image file name that can be written and is none of the inputs."""
    if os.path.splitext(output)[1].lower() not in (".png", ".jpg", ".jpeg"):
        raise NSTError(f"--output: {output}: use a .png, .jpg or .jpeg file name")
    fileio.check_writable(output, "--output")
    fileio.refuse_inputs([output], [FLAGS.content, *FLAGS.style], "--output")


def config_from_flags(output):
    """The :class:`~nst_tf.gatys.GatysConfig` the flags describe; checkpoints default beside ``output``."""
    checkpoint_dir = FLAGS.checkpoint_dir
    if checkpoint_dir is None and (FLAGS.checkpoint_every or FLAGS.resume):
        checkpoint_dir = os.path.splitext(output)[0] + "_checkpoint"
    return config.from_flags(gatys.GatysConfig, FLAGS, checkpoint_dir=checkpoint_dir)


def stylize_with_model():
    """``--model=DIR``: a trained feed-forward net over an image or a folder."""
    if not FLAGS.content:
        raise NSTError("--content: required (an image or a folder)")
    options = config.from_flags(gatys.GatysConfig, FLAGS)
    inference_config = inference.InferenceConfig(
        model=FLAGS.model,
        content=FLAGS.content,
        output=FLAGS.output,
        style_images=tuple(FLAGS.style or ()),
        style_weights=options.style_weights,
        alpha=FLAGS.alpha,
        mask=FLAGS.mask,
        style_size=FLAGS.style_size,
        preserve_color=options.preserve_color,
        # Full size unless the user asked for a size: the Gatys default is not meant here.
        max_side=options.image_size if FLAGS["image_size"].present else None,
        precision=options.precision,
    )
    start = time.monotonic()
    target, count = inference.stylize_files(inference_config)
    cli.result(f"{target} {count} image{'s' if count != 1 else ''} {time.monotonic() - start:.1f}s")


def main(argv):
    del argv
    warning = precision.emulation_warning(FLAGS.precision)
    if warning:
        sys.stderr.write(f"{warning}: --precision=float32 runs faster here\n")
    if FLAGS.model:
        return stylize_with_model()
    if not FLAGS.content:
        raise NSTError("--content: required")
    if not FLAGS.style:
        raise NSTError("--style: required (or pass --model)")
    output = FLAGS.output or default_output(FLAGS.content, FLAGS.style)
    check_output(output)
    options = config_from_flags(output)

    # Random weights (--weights=none) are drawn from Keras' global generator.
    keras.utils.set_random_seed(options.seed)
    start = time.monotonic()
    result = gatys.stylize(FLAGS.content, FLAGS.style, options, progress=True)
    images.save_image(output, result)
    height, width = result.shape[:2]
    cli.result(f"{output} {width}x{height} {time.monotonic() - start:.1f}s")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
