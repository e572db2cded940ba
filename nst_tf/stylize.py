"""nst-stylize: stylize an image by optimisation (Gatys et al.) or with a trained net.

    nst-stylize --content=photo.jpg --style=painting.jpg --output=out.png
    nst-stylize --flagfile=configs/gatys_preview.flags --content=... --style=...
    nst-stylize --model=runs/starry --content=photos/ --output=stylized/

Every Gatys flag maps one-to-one onto a field of :class:`nst_tf.gatys.GatysConfig`
or of its ``loss``, a :class:`nst_tf.losses.LossConfig` (same name, same default). Quiet by default: one progress bar on stderr, one
result line on stdout; a bad input prints one line and exits with status 1
without writing anything.
"""

from nst_tf import cli  # First: quiets TensorFlow's start-up logging.

import os
import sys
import time
import types

import keras
from absl import flags

from nst_tf import features
from nst_tf import gatys
from nst_tf import images
from nst_tf import lbfgs
from nst_tf import losses
from nst_tf.errors import NSTError
from nst_tf.precision import PRECISIONS

_D = {**losses.LossConfig.__dataclass_fields__, **gatys.GatysConfig.__dataclass_fields__}
FLAGS = flags.FLAGS


def _default(name):
    return _D[name].default


# Inputs and output.
flags.DEFINE_string("content", None, "Content image (with --model: an image or a folder).")
flags.DEFINE_multi_string("style", None, "Style image; repeat for several styles.")
flags.DEFINE_list("style_weights", None,
                  "Blend weights of the --style images, e.g. 0.7,0.3 (default: equal).")
flags.DEFINE_string("output", None,
                    "Output image (.png/.jpg); default <content>_<style>.png in the current "
                    "folder. With --model: a file or a folder.")
flags.DEFINE_string("model", None,
                    "Trained feed-forward model directory (nst-train-fast / "
                    "nst-train-multistyle); skips optimisation.")

# Sizes and steps.
flags.DEFINE_integer("image_size", _default("image_size"), "Longest side of the output.",
                     lower_bound=32)
flags.DEFINE_list("scales", [], "Smaller sizes optimised first, coarse to fine, e.g. 256,512; "
                  "each result initialises the next size, ending at --image_size.")
flags.DEFINE_float("style_scale", _default("style_scale"),
                   "Style image longest side relative to the content's.")
flags.DEFINE_boolean("style_crop", _default("style_crop"),
                     "Centre-crop the style image to the content's aspect ratio first.")
flags.DEFINE_integer("num_steps", _default("num_steps"), "Optimiser steps per scale.",
                     lower_bound=1)
flags.DEFINE_integer("coarse_steps", _default("coarse_steps"),
                     "Steps at each --scales size, before the last (default: --num_steps).",
                     lower_bound=1)

# Optimiser.
flags.DEFINE_enum("optimizer", _default("optimizer"), gatys.OPTIMIZERS, "Optimiser.")
flags.DEFINE_float("learning_rate", _default("learning_rate"),
                   "Adam/AdamW learning rate (pixels in [0, 1]).")
flags.DEFINE_enum("lr_schedule", _default("lr_schedule"), gatys.LR_SCHEDULES,
                  "Adam/AdamW schedule: step (x lr_gamma every lr_step_size), exponential, "
                  "plateau (x lr_gamma after lr_patience steps without improvement).")
flags.DEFINE_integer("lr_step_size", _default("lr_step_size"), "Steps per decay.", lower_bound=1)
flags.DEFINE_float("lr_gamma", _default("lr_gamma"), "Decay factor of the LR schedules.")
flags.DEFINE_integer("lr_patience", _default("lr_patience"), "Plateau patience (steps).",
                     lower_bound=1)
flags.DEFINE_float("weight_decay", _default("weight_decay"), "AdamW weight decay.")
flags.DEFINE_integer("lbfgs_history", _default("lbfgs_history"),
                     "L-BFGS correction pairs (default: nst_tf.lbfgs's).", lower_bound=1)
flags.DEFINE_float("lbfgs_tolerance", _default("lbfgs_tolerance"),
                   "L-BFGS gradient tolerance (default: nst_tf.lbfgs's).")
flags.DEFINE_enum("lbfgs_line_search", _default("lbfgs_line_search"), list(lbfgs.LINE_SEARCHES),
                  "backtracking: one evaluation per iteration (default); hager_zhang: "
                  "tfp.optimizer.lbfgs_minimize with its Wolfe line search.")
flags.DEFINE_boolean("jit_compile", _default("jit_compile"), "Compile the loss with XLA.")
flags.DEFINE_enum("precision", _default("precision"), list(PRECISIONS),
                  "Compute precision of the feature network (or of --model). bfloat16 is about "
                  "twice as fast on CPUs with AVX512-BF16 or AMX and slower on others.")

# Losses.
flags.DEFINE_list("content_layers", None,
                  "Content layers by name or conv index (default: block4_conv2).")
flags.DEFINE_list("style_layers", None,
                  "Style layers by name or conv index (default: block1..5_conv1).")
flags.DEFINE_list("style_layer_weights", None,
                  "Weight w_l per style layer (default: 1/L each).")
flags.DEFINE_float("content_weight", _default("content_weight"), "alpha.")
flags.DEFINE_float("style_weight", _default("style_weight"), "beta.")
flags.DEFINE_float("tv_weight", _default("tv_weight"), "Total-variation weight.")
flags.DEFINE_float("laplacian_weight", _default("laplacian_weight"),
                   "Laplacian loss weight (Li et al. 2017).")
flags.DEFINE_enum("content_loss", _default("content_loss"), losses.REDUCTIONS,
                  "Content loss: sum (the paper's 1/2 sum of squares) or mean.")

# Feature network.
flags.DEFINE_enum("feature_extractor", _default("feature_extractor"),
                  list(features.EXTRACTORS), "Feature network.")
flags.DEFINE_string("weights", _default("weights"),
                    "imagenet (Keras cache), a Keras no-top weights file, or none (random).")
flags.DEFINE_enum("pooling", _default("pooling"), features.POOLINGS, "VGG pooling.")

# Start and colour.
flags.DEFINE_enum("init", _default("init"), gatys.INITS, "Starting image.")
flags.DEFINE_float("noise_ratio", _default("noise_ratio"),
                   "With --init=blend: (1 - r) content + r noise.")
flags.DEFINE_enum("preserve_color", _default("preserve_color"), list(images.PRESERVE_COLOR_MODES),
                  images.PRESERVE_COLOR_HELP)
flags.DEFINE_integer("seed", _default("seed"), "Random seed (noise init, random weights).")

# Monitoring and interruption. absl.logging owns a --log_dir for log files these
# tools never write; the issue's --log_dir (TensorBoard) takes the name over.
delattr(FLAGS, "log_dir")
flags.DEFINE_string("log_dir", None, "TensorBoard log folder (losses per step, images).")
flags.DEFINE_integer("log_every", _default("log_every"),
                     "Steps between progress/TensorBoard reports.", lower_bound=1)
flags.DEFINE_integer("image_every", _default("image_every"),
                     "Steps between TensorBoard images.", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", _default("checkpoint_every"),
                     "Save the image being optimised every N steps (0: never).", lower_bound=0)
flags.DEFINE_string("checkpoint_dir", None,
                    "Checkpoint folder (default: <output without extension>_checkpoint).")
flags.DEFINE_boolean("resume", False, "Continue from the checkpoint in --checkpoint_dir.")


def default_output(content, styles):
    stem = lambda p: os.path.splitext(os.path.basename(p))[0]  # noqa: E731
    return f"{stem(content)}_{'+'.join(stem(s) for s in styles)}.png"


def config_from_flags(output):
    """The :class:`~nst_tf.gatys.GatysConfig` the flags describe.

    Every config field (and every field of its ``loss``) has a flag of the same
    name; the few that need parsing (number lists, ``--weights=none``, the
    default checkpoint folder) are converted here.
    """
    checkpoint_dir = FLAGS.checkpoint_dir
    if checkpoint_dir is None and (FLAGS.checkpoint_every or FLAGS.resume):
        checkpoint_dir = os.path.splitext(output)[0] + "_checkpoint"
    loss = cli.dataclass_from_flags(
        losses.LossConfig,
        FLAGS,
        style_layer_weights=cli.numbers_flag("style_layer_weights", FLAGS.style_layer_weights),
        weights=cli.weights_flag(FLAGS.weights),
    )
    return cli.dataclass_from_flags(
        gatys.GatysConfig,
        FLAGS,
        loss=loss,
        scales=cli.numbers_flag("scales", FLAGS.scales, int) or (),
        style_weights=cli.numbers_flag("style_weights", FLAGS.style_weights),
        checkpoint_dir=checkpoint_dir,
    )


def main(argv):
    del argv
    if FLAGS.model:
        # Feed-forward nets (task fasttrain): --content may be an image or a folder.
        from nst_tf import inference  # pylint: disable=import-outside-toplevel
        return inference.stylize_from_flags(FLAGS)

    if not FLAGS.content:
        raise NSTError("--content: required")
    if not FLAGS.style:
        raise NSTError("--style: required (or pass --model)")
    output = FLAGS.output or default_output(FLAGS.content, FLAGS.style)
    if os.path.splitext(output)[1].lower() not in (".png", ".jpg", ".jpeg"):
        raise NSTError(f"--output: {output}: use a .png, .jpg or .jpeg file name")
    config = config_from_flags(output)

    # Random weights (--weights=none) are drawn from Keras' global generator.
    keras.utils.set_random_seed(config.seed)
    start = time.monotonic()
    result = gatys.stylize(FLAGS.content, FLAGS.style, config, progress=True)
    images.save_image(output, result)
    height, width = result.shape[:2]
    cli.result(f"{output} {width}x{height} {time.monotonic() - start:.1f}s")


def run():
    cli.run(main)


class _StylizeModule(types.ModuleType):
    """Keeps ``nst_tf.stylize(content, style, config)`` working once this module is imported.

    Importing ``nst_tf.stylize`` rebinds the package attribute ``stylize`` from
    the API function (:func:`nst_tf.gatys.stylize`) to this script module;
    making the module callable keeps both names meaning what users expect.
    """

    def __call__(self, *args, **kwargs):
        return gatys.stylize(*args, **kwargs)


sys.modules[__name__].__class__ = _StylizeModule


if __name__ == "__main__":
    run()
