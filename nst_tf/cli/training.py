"""What the training commands share: the feed-forward trainers' flags and main, flags.txt, the result line.

``nst-train-fast`` and ``nst-train-multistyle`` call :func:`define_feedforward_flags`
at import time and run :func:`feedforward_main`; ``nst-train-cyclegan`` and
``nst-train-arbitrary`` run :func:`train_main` with their own config and trainer.
"""

import sys

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf import losses
from nst_tf.training import feedforward

FLAGS = flags.FLAGS
FEEDFORWARD_EXCLUDE = ("multistyle",)

# The flags defined here belong to the command module that calls these functions.
flags.disclaim_key_flags()


def _feedforward_exclude(multistyle):
    return FEEDFORWARD_EXCLUDE + (() if multistyle else ("base_dir",))


def define_feedforward_flags(multistyle):
    """Flags of nst-train-fast (``multistyle=False``) or nst-train-multistyle.

    They are the fields of FeedForwardConfig (TrainConfig's included), and
    nst-train-multistyle's ``--add_style``.
    """
    config.define_flags(
        feedforward.FeedForwardConfig,
        exclude=_feedforward_exclude(multistyle),
        help_overrides=None if multistyle else {"style": "Style image."},
    )
    if multistyle:
        flags.DEFINE_multi_string(
            "add_style",
            [],
            "Style image to add to the trained multi-style net of "
            "--base_dir; only its gamma/beta are trained (repeatable).",
        )
        flags.register_multi_flags_validator(
            ["style", "add_style", "base_dir"],
            lambda v: bool(v["add_style"]) == bool(v["base_dir"]) and bool(v["style"]) != bool(v["add_style"]),
            message="give either --style (train new styles) or --add_style with --base_dir (add styles)",
        )
    else:
        flags.register_validator("style", lambda v: len(v) == 1, message="give exactly one --style image")


def feedforward_config(multistyle):
    """The FeedForwardConfig the parsed flags describe."""
    overrides = {"multistyle": multistyle}
    if multistyle and FLAGS.add_style:
        overrides["style_images"] = tuple(FLAGS.add_style)
    return config.from_flags(
        feedforward.FeedForwardConfig, FLAGS, exclude=_feedforward_exclude(multistyle), **overrides
    )


def train_main(make_config, train):
    """The absl ``main`` of a training command: ``train`` the config ``make_config()`` reads from
    the parsed flags, saving :func:`flags_text` with the run, then :func:`report`."""

    def main(argv):
        del argv
        # train() creates the distribution strategy before any other TensorFlow work.
        options = make_config()
        report(train(options, flags_text=flags_text()), options.output_dir)

    return main


def feedforward_main(multistyle):
    """The absl ``main`` of nst-train-fast (``multistyle=False``) or nst-train-multistyle."""
    return train_main(lambda: feedforward_config(multistyle), feedforward.train)


def flags_text():
    """This program's own flags (not absl's) in --flagfile format, for ``flags.txt``."""
    lines = []
    for module, defined in sorted(FLAGS.flags_by_module_dict().items()):
        # Flags of a module run as __main__ are listed under its path, sys.argv[0].
        if module.startswith("nst_tf") or module == sys.argv[0]:
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
    shown = " ".join(f"{k}={v:.4g}" for k, v in result.metrics.items() if k in losses.SUMMARY_TERMS or k == "d_loss")
    skipped = f", skipped {result.skipped_files} unreadable files" if result.skipped_files else ""
    cli.result(f"step {result.step}: {shown}{held_out(result.eval_metrics)}; model in {output_dir}{skipped}")


def held_out(eval_metrics):
    """The result line's part for the last ``--eval_dir`` evaluation: each style's style ratio and SSIM."""
    suffix = "/style_gram_ratio"
    styles = [key[: -len(suffix)] for key in eval_metrics if key.endswith(suffix)]
    parts = [
        f"{style} style ratio {eval_metrics[style + suffix]:.3g}, SSIM {eval_metrics[style + '/ssim_luminance']:.2f}"
        for style in styles
    ]
    return f"; held-out {'; '.join(parts)}" if parts else ""
