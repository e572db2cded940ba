"""nst-train-fast: train a Johnson et al. 2016 feed-forward net for one style.

    nst-train-fast --flagfile=configs/fast_starry_night.flags

Rerunning with the same --output_dir resumes from its latest checkpoint.
"""

from nst_tf import cli  # first: quiets TensorFlow's start-up logging

from absl import flags

from nst_tf.training import base, feedforward
from nst_tf.training import flags as train_flags

train_flags.define_common_flags(max_steps=40000, checkpoint_every=1000)
train_flags.define_feedforward_flags(multistyle=False)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    strategy = base.make_strategy()  # before any other TF work (multi-worker collectives)
    result = feedforward.train(
        train_flags.train_config_from_flags(FLAGS),
        train_flags.feedforward_config_from_flags(FLAGS, multistyle=False),
        flags_text=train_flags.flags_text(),
        strategy=strategy,
    )
    train_flags.report(result, FLAGS.output_dir)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
