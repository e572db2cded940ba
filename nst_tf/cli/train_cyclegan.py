"""nst-train-cyclegan: train a CycleGAN (Zhu et al. 2017) for unpaired image-to-image translation.

    nst-train-cyclegan --flagfile=configs/cyclegan_monet2photo.flags
    python nst_tf/cli/train_cyclegan.py --data_dir=DIR --output_dir=runs/monet --image_size=128 --n_blocks=6

``--data_dir`` holds trainA, trainB (and testA, testB) as in the authors'
datasets; without it the tfds dataset ``--tfds_name`` is used. Rerunning with
the same ``--output_dir`` resumes from its latest checkpoint; Ctrl-C stops
after the current step and saves. The flags are the fields of
:class:`nst_tf.training.cyclegan.CycleGANConfig`.
"""

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf.cli import training
from nst_tf.training import cyclegan

FLAGS = flags.FLAGS
config.define_flags(cyclegan.CycleGANConfig)

main = training.train_main(lambda: config.from_flags(cyclegan.CycleGANConfig, FLAGS), cyclegan.train)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
