"""What the training commands share: the feed-forward trainers' flags and main, flags.txt, the result line.

``nst-train-fast`` and ``nst-train-multistyle`` call :func:`define_feedforward_flags`
at import time and run :func:`feedforward_main`; ``nst-train-cyclegan`` uses
:func:`flags_text` and :func:`report` too.
"""

import sys

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf.training import base
from nst_tf.training import feedforward
from nst_tf.training.base import TrainConfig

FLAGS = flags.FLAGS
# The photos' order and crops follow --seed, TrainConfig's.
FEEDFORWARD_EXCLUDE = ("data.seed", "multistyle")

# The flags defined here belong to the command module that calls these functions.
flags.disclaim_key_flags()


def _feedforward_exclude(multistyle):
    return FEEDFORWARD_EXCLUDE + (() if multistyle else ("base_dir",))


def define_feedforward_flags(multistyle):
    """Flags of nst-train-fast (``multistyle=False``) or nst-train-multistyle.

    They are the fields of TrainConfig and FeedForwardConfig, and
    nst-train-multistyle's ``--add_style``.
    """
    config.define_flags(TrainConfig)
    config.define_flags(feedforward.FeedForwardConfig, exclude=_feedforward_exclude(multistyle),
                        help_overrides=None if multistyle else {"style": "Style image."})
    if multistyle:
        flags.DEFINE_multi_string("add_style", [], "Style image to add to the trained multi-style net of "
                                  "--base_dir; only its gamma/beta are trained (repeatable).")
        flags.register_multi_flags_validator(
            ["style", "add_style", "base_dir"],
            lambda v: bool(v["add_style"]) == bool(v["base_dir"])
            and bool(v["style"]) != bool(v["add_style"]),
            message="give either --style (train new styles) or --add_style with --base_dir (add styles)",
        )
    else:
        flags.register_validator("style", lambda v: len(v) == 1, message="give exactly one --style image")


def feedforward_configs(multistyle):
    """``(TrainConfig, FeedForwardConfig)`` from the parsed flags."""
    train_config = config.from_flags(TrainConfig, FLAGS)
    overrides = {"multistyle": multistyle, "seed": train_config.seed}
    if multistyle and FLAGS.add_style:
        overrides["style_images"] = tuple(FLAGS.add_style)
    return train_config, config.from_flags(feedforward.FeedForwardConfig, FLAGS,
                                           exclude=_feedforward_exclude(multistyle), **overrides)


def feedforward_main(multistyle):
    """The absl ``main`` of nst-train-fast (``multistyle=False``) or nst-train-multistyle."""

    def main(argv):
        del argv
        strategy = base.make_strategy()  # before any other TF work (multi-worker collectives)
        train_config, feedforward_config = feedforward_configs(multistyle)
        result = feedforward.train(train_config, feedforward_config, flags_text=flags_text(),
                                   strategy=strategy)
        report(result, train_config.output_dir)

    return main


def flags_text():
    """This program's own flags (not absl's) in --flagfile format, for ``flags.txt``."""
    lines = []
    for module, defined in sorted(FLAGS.flags_by_module_dict().items()):
        # Flags of a module run as __main__ are listed under its path, sys.argv[0].
        if module.startswith("nst_tf") or module == sys.argv[0]:
            lines += [flag.serialize() for flag in sorted(defined, key=lambda f: f.name) if flag.serialize()]
    return "\n".join(lines) + "\n"


def report(result, output_dir):
    """The training commands' ending: one result line, or exit 130 after Ctrl-C."""
    if result.interrupted:
        sys.stderr.write(
            f"interrupted at step {result.step}; checkpoint saved in {output_dir} "
            "(run the same command again to resume)\n"
        )
        sys.exit(130)
    losses = " ".join(f"{k}={v:.4g}" for k, v in result.metrics.items() if k.endswith("loss"))
    skipped = f", skipped {result.skipped_files} unreadable files" if result.skipped_files else ""
    cli.result(f"step {result.step}: {losses}; model in {output_dir}{skipped}")
