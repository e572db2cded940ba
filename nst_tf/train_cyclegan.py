"""Train a CycleGAN (Zhu et al. 2017) for unpaired image-to-image translation.

    nst-train-cyclegan --flagfile=configs/cyclegan_monet2photo.flags
    python -m nst_tf.train_cyclegan --data_dir=DIR --output_dir=runs/monet --image_size=128 --n_blocks=6

``--data_dir`` holds trainA, trainB (and testA, testB) as in the authors'
datasets; without it the tfds dataset ``--tfds_name`` is used. Rerunning with
the same ``--output_dir`` resumes from its latest checkpoint; Ctrl-C stops
after the current step and saves.
"""

from nst_tf import cli  # first: quiets TensorFlow's start-up logging

import dataclasses

from absl import flags

from nst_tf.training import cyclegan
from nst_tf.training import flags as train_flags

FLAGS = flags.FLAGS
_DEFAULTS = cyclegan.CycleGANConfig  # its class attributes are the field defaults

train_flags.define_common_flags(max_steps=1_000_000_000, checkpoint_every=1000)
flags.DEFINE_string("data_dir", None, "Folder with trainA, trainB, testA, testB (the authors' layout); wins over tfds.")
flags.DEFINE_string("tfds_name", _DEFAULTS.tfds_name, "tfds dataset with trainA/trainB/testA/testB splits.")
flags.DEFINE_string("tfds_data_dir", None, "tfds data folder (default: tfds' own).")
flags.DEFINE_integer("image_size", _DEFAULTS.image_size, "Training crop size (the paper: 256).", lower_bound=32)
flags.DEFINE_integer("load_size", _DEFAULTS.load_size, "Resize to this square before the random crop (286).", lower_bound=32)
flags.DEFINE_integer("n_blocks", _DEFAULTS.n_blocks, "Generator residual blocks: 9 for 256 px, 6 for 128 px.", lower_bound=0)
flags.DEFINE_integer("ngf", _DEFAULTS.ngf, "Generator width (filters of the first layer).", lower_bound=1)
flags.DEFINE_integer("ndf", _DEFAULTS.ndf, "Discriminator width (filters of the first layer).", lower_bound=1)
flags.DEFINE_enum("upsampling", _DEFAULTS.upsampling, ["transpose", "resize"],
                  "Generator upsampling: transposed conv (paper) or nearest resize + conv (no checkerboard).")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Epochs at the initial learning rate.", lower_bound=0)
flags.DEFINE_integer("epochs_decay", _DEFAULTS.epochs_decay, "Epochs of linear decay to 0 after --epochs.", lower_bound=0)
flags.DEFINE_integer("steps_per_epoch", _DEFAULTS.steps_per_epoch,
                     "Steps per epoch (0: one pass over the larger domain).", lower_bound=0)
flags.DEFINE_integer("max_train_images", _DEFAULTS.max_train_images,
                     "Use only the first N training images of each domain (0: all).", lower_bound=0)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Global batch size (the paper: 1).", lower_bound=1)
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Adam learning rate of G and D.", lower_bound=0.0)
flags.DEFINE_float("beta_1", _DEFAULTS.beta_1, "Adam beta1.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_enum("gan_loss", _DEFAULTS.gan_loss, ["lsgan", "bce"], "Adversarial loss.")
flags.DEFINE_float("lambda_cycle", _DEFAULTS.lambda_cycle, "Weight of the cycle-consistency L1 loss.", lower_bound=0.0)
flags.DEFINE_float("lambda_identity", _DEFAULTS.lambda_identity,
                   "Identity loss weight as a fraction of --lambda_cycle (0: off).", lower_bound=0.0)
flags.DEFINE_integer("pool_size", _DEFAULTS.pool_size, "Generated-image history per domain (0: none).", lower_bound=0)
flags.DEFINE_enum("direction", _DEFAULTS.direction, ["both", "a2b", "b2a"],
                  "both: CycleGAN; a2b/b2a: one generator and one discriminator, no cycle loss (seed 000).")
flags.DEFINE_enum("lr_schedule", _DEFAULTS.lr_schedule, ["linear", "plateau", "constant"],
                  "linear: constant for --epochs then linear decay; plateau: reduce on plateau; constant.")
flags.DEFINE_float("plateau_factor", _DEFAULTS.plateau_factor, "LR multiplier on a plateau.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("plateau_patience", _DEFAULTS.plateau_patience, "Epochs without improvement before a cut.",
                     lower_bound=0)
flags.DEFINE_integer("num_samples", _DEFAULTS.num_samples, "Test images per TensorBoard translation grid.",
                     lower_bound=1)


def config_from_flags(values):
    """A CycleGANConfig from parsed flags (absl FLAGS or any object with those attributes)."""
    names = [f.name for f in dataclasses.fields(cyclegan.CycleGANConfig) if hasattr(values, f.name)]
    settings = {name: getattr(values, name) for name in names}
    if values is FLAGS and not FLAGS["image_every"].present:
        settings["image_every"] = None  # the translation grid at every epoch end
    return cyclegan.CycleGANConfig(**settings)


def main(argv):
    del argv
    config = config_from_flags(FLAGS)
    # train() creates the distribution strategy before any other TensorFlow work.
    train_flags.report(cyclegan.train(config, flags_text=train_flags.flags_text()), config.output_dir)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
