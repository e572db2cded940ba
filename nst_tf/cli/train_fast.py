"""nst-train-fast: train a Johnson et al. 2016 feed-forward net for one style.

    nst-train-fast --flagfile=configs/fast_starry_night.flags

Rerunning with the same --output_dir resumes from its latest checkpoint.
"""

from nst_tf import cli
from nst_tf.cli import training

training.define_feedforward_flags(multistyle=False)
main = training.feedforward_main(multistyle=False)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
