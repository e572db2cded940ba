"""nst-train-fast: train a Johnson et al. 2016 feed-forward net for one style.

    nst-train-fast --flagfile=configs/fast_starry_night.flags

Rerunning with the same --output_dir resumes from its latest checkpoint.
"""

from nst_tf import cli  # first: quiets TensorFlow's start-up logging

from nst_tf.training import flags as train_flags

train_flags.define_common_flags(max_steps=40000, checkpoint_every=1000)
train_flags.define_feedforward_flags(multistyle=False)
main = train_flags.feedforward_main(multistyle=False)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
