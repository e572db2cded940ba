"""absl flags of the training commands, and their conversion to config dataclasses.

Scripts call the ``define_*`` functions at import time (before ``cli.run``)
and the ``*_from_flags`` functions in ``main``. The generic flags
(:func:`define_common_flags`) are shared by every trainer.
"""

import dataclasses
import sys

from absl import flags

from nst_tf import cli
from nst_tf import losses
from nst_tf.data import PhotoDataConfig
from nst_tf.training import feedforward
from nst_tf.training.base import TrainConfig


def define_common_flags(max_steps=TrainConfig.max_steps, checkpoint_every=TrainConfig.checkpoint_every):
    """Define --output_dir, --max_steps, --checkpoint_every, --log_every, --image_every, --seed, --mixed_precision."""
    flags.DEFINE_string("output_dir", None, "Run folder: checkpoints/, logs/ (TensorBoard), flags.txt, "
                        "model_config.json. Rerunning with the same folder resumes.")
    flags.DEFINE_integer("max_steps", max_steps, "Total training steps (including steps of a resumed run).", lower_bound=1)
    flags.DEFINE_integer("checkpoint_every", checkpoint_every, "Save a checkpoint every N steps.", lower_bound=1)
    flags.DEFINE_integer("log_every", TrainConfig.log_every, "Write TensorBoard scalars every N steps.", lower_bound=1)
    flags.DEFINE_integer("image_every", TrainConfig.image_every,
                         "Write sample images to TensorBoard every N steps (0: never).", lower_bound=0)
    flags.DEFINE_integer("seed", TrainConfig.seed, "Seed of the data order, crops and initial weights.")
    flags.DEFINE_bool("mixed_precision", TrainConfig.mixed_precision,
                      "Compute in 16 bits: float16 with loss scaling on GPUs, bfloat16 on CPUs "
                      "(about 2x faster with AVX512-BF16 or AMX, slower without).")
    flags.mark_flag_as_required("output_dir")


def define_feedforward_flags(multistyle):
    """Flags of nst-train-fast (``multistyle=False``) and nst-train-multistyle."""
    loss = losses.LossConfig.johnson()
    ff = feedforward.FeedForwardConfig  # its class attributes are the field defaults
    photos = PhotoDataConfig()
    flags.DEFINE_multi_string("style", [], "Style image" + (" (repeat for each style)." if multistyle else "."))
    flags.DEFINE_string("train_dir", None, "Folder of training photos (searched recursively); "
                        "without it the photos come from tfds --tfds_name.")
    flags.DEFINE_string("tfds_name", photos.tfds_name, "tfds dataset of training photos (when no --train_dir).")
    flags.DEFINE_string("tfds_data_dir", None, "tfds data dir (default: tfds' own, ~/tensorflow_datasets).")
    flags.DEFINE_string("tfds_split", photos.tfds_split, "tfds split to train on.")
    flags.DEFINE_integer("image_size", photos.image_size, "Training crop size in pixels.", lower_bound=32)
    flags.DEFINE_integer("batch_size", ff.batch_size, "Global batch size (split over replicas).", lower_bound=1)
    flags.DEFINE_float("learning_rate", ff.learning_rate, "Adam learning rate.", lower_bound=0.0)
    flags.DEFINE_float("content_weight", loss.content_weight, "Weight of the feature (content) loss.", lower_bound=0.0)
    flags.DEFINE_float("style_weight", loss.style_weight, "Weight of the style (Gram) loss.", lower_bound=0.0)
    flags.DEFINE_float("tv_weight", loss.tv_weight, "Weight of the total-variation loss (on 0-255 pixels).",
                       lower_bound=0.0)
    flags.DEFINE_float("pixel_weight", loss.pixel_weight, "Weight of a per-pixel loss to the input photo.",
                       lower_bound=0.0)
    flags.DEFINE_enum("feature_extractor", loss.feature_extractor, ["vgg16", "vgg19", "resnet50"],
                      "Loss network.")
    flags.DEFINE_string("weights", loss.weights, "Loss-network weights: 'imagenet' (Keras cache), a Keras "
                        "no-top .weights.h5 file, or 'none' (random, for tests).")
    flags.DEFINE_list("content_layers", [], "Content layers (names or conv indices); default relu2_2 "
                      "(block2_conv2) for VGG, the extractor's default otherwise.")
    flags.DEFINE_list("style_layers", [], "Style layers; default relu1_2, relu2_2, relu3_3, relu4_3 for VGG.")
    flags.DEFINE_list("style_layer_weights", [], "One weight per style layer (default all 1).")
    flags.DEFINE_integer("style_size", ff.style_size, "Longest side of the style images for their Gram targets.",
                         lower_bound=32)
    flags.DEFINE_float("width", ff.width, "Width multiplier of the style net's channels.", lower_bound=0.01)
    flags.DEFINE_integer("num_residual_blocks", ff.num_residual_blocks, "Residual blocks in the style net.",
                         lower_bound=0)
    flags.DEFINE_integer("warmup_steps", 0, "Staged schedule: content-only steps before the style loss starts.",
                         lower_bound=0)
    flags.DEFINE_integer("style_ramp_steps", 0, "Staged schedule: steps over which the style weight ramps to "
                         "--style_weight after the warm-up.", lower_bound=0)
    flags.DEFINE_integer("lr_halve_every", 0, "Staged schedule: halve the learning rate every N steps after "
                         "the warm-up (0: constant).", lower_bound=0)
    if multistyle:
        flags.DEFINE_multi_string("add_style", [], "Style image to add to the trained multi-style net of "
                                  "--base_dir; only its gamma/beta are trained (repeatable).")
        flags.DEFINE_string("base_dir", None, "With --add_style: the output dir of a trained multi-style run "
                            "(left unchanged; the result goes to --output_dir).")
        flags.register_multi_flags_validator(
            ["style", "add_style", "base_dir"],
            lambda v: bool(v["add_style"]) == bool(v["base_dir"]) and (bool(v["style"]) != bool(v["add_style"])),
            message="give either --style (train new styles) or --add_style with --base_dir (add styles)",
        )
    else:
        flags.register_validator("style", lambda v: len(v) == 1, message="give exactly one --style image")


def feedforward_config_from_flags(values, multistyle):
    """A FeedForwardConfig (run settings included) from parsed flag values."""
    # The flags a trainer defines override Johnson's loss settings, its default.
    fields = {f.name: getattr(values, f.name) for f in dataclasses.fields(losses.LossConfig) if hasattr(values, f.name)}
    fields.update(
        weights=cli.weights_flag(values.weights),
        content_layers=values.content_layers or None,
        style_layers=values.style_layers or None,
        style_layer_weights=cli.numbers_flag("style_layer_weights", values.style_layer_weights),
    )
    loss = dataclasses.replace(losses.LossConfig.johnson(), **fields)
    adding = multistyle and bool(values.add_style)
    return cli.dataclass_from_flags(
        feedforward.FeedForwardConfig,
        values,
        style_images=list(values.add_style if adding else values.style),
        data=cli.dataclass_from_flags(PhotoDataConfig, values),
        loss=loss,
        multistyle=multistyle,
        base_dir=values.base_dir if adding else None,
    )


def flags_text():
    """This program's own flags (not absl's) in --flagfile format, for ``flags.txt``."""
    lines = []
    for module, defined in sorted(flags.FLAGS.flags_by_module_dict().items()):
        if module.startswith("nst_tf"):
            lines += [flag.serialize() for flag in sorted(defined, key=lambda f: f.name) if flag.serialize()]
    return "\n".join(lines) + "\n"


def report(result, output_dir):
    """Every training command's ending: one result line, or exit 130 after Ctrl-C."""
    if result.interrupted:
        sys.stderr.write(
            f"interrupted at step {result.step}; checkpoint saved in {output_dir} "
            "(run the same command again to resume)\n"
        )
        sys.exit(130)
    # The summary terms, and the CycleGAN discriminator's loss beside its generators' total.
    shown = " ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()
                     if k in losses.SUMMARY_TERMS or k == "d_loss")
    skipped = f", skipped {result.skipped_files} unreadable files" if result.skipped_files else ""
    cli.result(f"step {result.step}: {shown}; model in {output_dir}{skipped}")


def feedforward_main(multistyle):
    """The absl ``main`` of nst-train-fast (``multistyle=False``) or nst-train-multistyle."""

    def main(argv):
        del argv
        # train() creates the distribution strategy before any other TensorFlow work.
        config = feedforward_config_from_flags(flags.FLAGS, multistyle=multistyle)
        report(feedforward.train(config, flags_text=flags_text()), config.output_dir)

    return main
