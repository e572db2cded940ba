"""CycleGAN training (Zhu et al. 2017) on the shared training base.

The objective of the generators G: A -> B and F: B -> A (eq. 3 and sec. 5.2)::

    L_G = L_gan(G, D_B) + L_gan(F, D_A)
          + lambda_cycle * (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)
          + lambda_cycle * lambda_identity * (|G(b) - b|_1 + |F(a) - a|_1)

and each discriminator minimises its LSGAN (default) or BCE loss on real
images against generated ones drawn from a history pool of 50 (Shrivastava et
al. 2017). One ``tf.function`` step updates both generators with one Adam
optimiser, then both discriminators with another (the authors' order). The
``a2b``/``b2a`` variant of the INFO8010 report (Meurisse et al.) trains one generator and one discriminator,
with no cycle term.

Learning rate: Adam 2e-4, beta1 0.5, constant for ``epochs`` then linearly to 0
over ``epochs_decay`` (:class:`nst_tf.schedules.LinearDecay`); or reduce-on-plateau
at epoch ends (:class:`nst_tf.schedules.ReduceLROnPlateau`), or constant.

Every random choice (crops, flips, pool draws) is a stateless function of the
seed and the step, and the pools are checkpointed, so an interrupted run
resumes to exactly the variables of an uninterrupted one.
"""

import dataclasses
from typing import Optional

import keras
import tensorflow as tf

from nst_tf import data
from nst_tf import losses
from nst_tf import schedules
from nst_tf.config import option
from nst_tf.data import UnpairedDataConfig
from nst_tf.models.cyclegan import UPSAMPLING_MODES
from nst_tf.models.cyclegan import PatchDiscriminator
from nst_tf.models.cyclegan import ResnetGenerator
from nst_tf.training import base
from nst_tf.training.image_pool import ImagePool

DIRECTIONS = ("both", "a2b", "b2a")
LR_SCHEDULES = ("linear", "plateau", "constant")


@dataclasses.dataclass
class CycleGANConfig(base.TrainConfig):
    """Every CycleGAN setting; the defaults are the paper's (256 px, 9 blocks).

    ``max_steps`` only caps a run: the epochs define the length and the schedule.
    ``image_every=None`` writes the translation grid at each epoch end.
    """

    # The crops, flips and data order follow the run's seed.
    data: UnpairedDataConfig = dataclasses.field(
        default_factory=UnpairedDataConfig, metadata={"set_by_parent": ("seed",)}
    )
    n_blocks: int = option(9, "Generator residual blocks: 9 for 256 px, 6 for 128 px.", min=0)
    ngf: int = option(64, "Generator width (filters of the first layer).", min=1)
    ndf: int = option(64, "Discriminator width (filters of the first layer).", min=1)
    upsampling: str = option(
        "transpose",
        "Generator upsampling: transposed conv (paper), or nearest or bilinear resize + conv (no checkerboard).",
        choices=UPSAMPLING_MODES,
    )
    epochs: int = option(100, "Epochs at the initial learning rate.", min=0)
    epochs_decay: int = option(100, "Epochs of linear decay to 0 after --epochs.", min=0)
    steps_per_epoch: int = option(0, "Steps per epoch (0: one pass over the larger domain).", min=0)
    batch_size: int = option(1, "Global batch size (the paper: 1).", min=1)
    learning_rate: float = option(2e-4, "Adam learning rate of G and D.", min=0.0)
    beta_1: float = option(0.5, "Adam beta1.", min=0.0, max=1.0)
    gan_loss: str = option("lsgan", "Adversarial loss.", choices=tuple(losses.GAN_LOSSES))
    lambda_cycle: float = option(10.0, "Weight of the cycle-consistency L1 loss.", min=0.0)
    lambda_identity: float = option(0.5, "Identity loss weight as a fraction of --lambda_cycle (0: off).", min=0.0)
    pool_size: int = option(50, "Generated-image history per domain (0: none).", min=0)
    direction: str = option(
        "both", "both: CycleGAN; a2b/b2a: one generator and one discriminator, no cycle loss.", choices=DIRECTIONS
    )
    lr_schedule: str = option(
        "linear",
        "linear: constant for --epochs then linear decay; plateau: reduce on plateau; constant.",
        choices=LR_SCHEDULES,
    )
    plateau_factor: float = option(0.1, "LR multiplier on a plateau.", min=0.0, max=1.0)
    plateau_patience: int = option(10, "Epochs without improvement before a cut.", min=0)
    num_samples: int = option(4, "Test images per TensorBoard translation grid.", min=1)
    max_steps: int = option(2**62, "Caps the run; --epochs and --epochs_decay set its length.", min=1)
    image_every: Optional[int] = option(
        None, "Write the translation grid every N steps (default: at each epoch end; 0: never).", min=0
    )

    def __post_init__(self):
        super().__post_init__()
        if self.data.seed != self.seed:
            self.data = dataclasses.replace(self.data, seed=self.seed)
        size = self.data.image_size
        base.check_all(
            [
                (size >= 32, "--image_size", "must be at least 32 (the PatchGAN needs 32 px)"),
                (self.data.load_size >= size, "--load_size", f"must be >= --image_size ({size})"),
                (self.epochs >= 0, "--epochs", f"must be >= 0, not {self.epochs}"),
                (self.epochs_decay >= 0, "--epochs_decay", f"must be >= 0, not {self.epochs_decay}"),
                (self.epochs + self.epochs_decay >= 1, "--epochs", "--epochs + --epochs_decay must be at least 1"),
                (0 < self.plateau_factor < 1, "--plateau_factor", "must be in (0, 1)"),
                (self.plateau_patience >= 0, "--plateau_patience", f"must be >= 0, not {self.plateau_patience}"),
                (self.n_blocks >= 0, "--n_blocks", f"must be >= 0, not {self.n_blocks}"),
                (self.ngf >= 1, "--ngf", f"must be >= 1, not {self.ngf}"),
                (self.ndf >= 1, "--ndf", f"must be >= 1, not {self.ndf}"),
                (
                    self.steps_per_epoch >= 0,
                    "--steps_per_epoch",
                    f"must be >= 0 (0: one pass), not {self.steps_per_epoch}",
                ),
                (
                    self.data.max_train_images >= 0,
                    "--max_train_images",
                    f"must be >= 0 (0: all), not {self.data.max_train_images}",
                ),
                (self.batch_size >= 1, "--batch_size", f"must be >= 1, not {self.batch_size}"),
                (self.learning_rate >= 0, "--learning_rate", f"must be >= 0, not {self.learning_rate}"),
                (0 <= self.beta_1 <= 1, "--beta_1", f"must be in [0, 1], not {self.beta_1}"),
                (self.lambda_cycle >= 0, "--lambda_cycle", f"must be >= 0, not {self.lambda_cycle}"),
                (self.lambda_identity >= 0, "--lambda_identity", f"must be >= 0, not {self.lambda_identity}"),
                (self.pool_size >= 0, "--pool_size", f"must be >= 0 (0: no pool), not {self.pool_size}"),
                (self.num_samples >= 1, "--num_samples", f"must be >= 1, not {self.num_samples}"),
            ]
        )


class CycleGANTrainer(base.Trainer):
    """Trains the CycleGAN of ``config`` (a :class:`CycleGANConfig`).

    Checkpoint attributes: ``generator_a2b``, ``generator_b2a``,
    ``discriminator_a`` (judges domain A), ``discriminator_b``; a one-direction
    run has only its generator and the target domain's discriminator.
    """

    method = "cyclegan"

    # -- base hooks ----------------------------------------------------------
    def prepare(self):
        config = self.config
        counts = data.unpaired_counts(config.data)
        self.steps_per_epoch = config.steps_per_epoch or max(1, max(counts.values()) // config.batch_size)
        self.total_steps = (config.epochs + config.epochs_decay) * self.steps_per_epoch
        self.config = dataclasses.replace(
            config,
            max_steps=min(config.max_steps, self.total_steps),
            image_every=self.steps_per_epoch if config.image_every is None else config.image_every,
        )
        self.gan_losses = losses.GAN_LOSSES[config.gan_loss]
        self._samples = None

    def build(self):
        c = self.config
        keras.utils.set_random_seed(c.seed)  # the initial weights
        directions = ("a2b", "b2a") if c.direction == "both" else (c.direction,)
        self.generators = {
            d: ResnetGenerator(c.ngf, c.n_blocks, c.upsampling, name=f"generator_{d}") for d in directions
        }
        # The discriminator of a direction judges its target domain.
        self.discriminators = {d: PatchDiscriminator(c.ndf, name=f"discriminator_{d[-1]}") for d in directions}
        self.pools = {
            d: ImagePool(c.pool_size, (c.data.image_size, c.data.image_size, 3), name=f"pool_{d[-1]}")
            for d in directions
        }
        schedule = schedules.learning_rate(
            c.lr_schedule,
            c.learning_rate,
            constant_steps=c.epochs * self.steps_per_epoch,
            decay_steps=c.epochs_decay * self.steps_per_epoch,
        )
        self.g_optimizer = self.make_optimizer(keras.optimizers.Adam(schedule, beta_1=c.beta_1))
        self.d_optimizer = self.make_optimizer(keras.optimizers.Adam(schedule, beta_1=c.beta_1))
        # Create the optimiser slots now, so a restore fills them in place.
        self.g_optimizer.build(self._variables(self.generators))
        self.d_optimizer.build(self._variables(self.discriminators))
        self.models = {f"generator_{d}": g for d, g in self.generators.items()}
        self.models.update({f"discriminator_{d[-1]}": net for d, net in self.discriminators.items()})
        objects = dict(self.models, g_optimizer=self.g_optimizer, d_optimizer=self.d_optimizer)
        objects.update({f"pool_{d[-1]}": pool for d, pool in self.pools.items()})
        self.plateaus = {}
        if c.lr_schedule == "plateau":
            self.plateaus = {
                name: schedules.ReduceLROnPlateau(c.plateau_factor, c.plateau_patience, name=f"plateau_{name}")
                for name in ("g", "d")
            }
            objects.update({f"plateau_{name}": tracker for name, tracker in self.plateaus.items()})
        return objects

    def make_dataset(self, input_context):
        c = self.config
        start = int(self.step.numpy()) * c.batch_size
        return data.unpaired_dataset(
            self.config.data,
            input_context.get_per_replica_batch_size(c.batch_size),
            start=start,
            num_shards=input_context.num_input_pipelines,
            shard_index=input_context.input_pipeline_id,
        )

    def checkpoint_due(self, step):
        return super().checkpoint_due(step) or step % self.steps_per_epoch == 0

    def train_step(self, batch):
        real = {"a": batch["a"], "b": batch["b"]}
        g = self.minimize(lambda: self._generator_losses(real), self.g_optimizer, self._variables(self.generators))
        seed = self.step_seed()
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        fakes = {}
        for i, (d, pool) in enumerate(self.pools.items()):
            pool_seed = tf.random.experimental.stateless_fold_in(seed, 2 * i + 1000 * tf.cast(replica, tf.int64))
            fakes[d] = pool.query(tf.stop_gradient(tf.cast(g["fake_" + d], tf.float32)), pool_seed)
        disc = self.minimize(
            lambda: self._discriminator_losses(real, fakes), self.d_optimizer, self._variables(self.discriminators)
        )
        metrics = {name: value for name, value in g.items() if not name.startswith("fake_")}
        metrics["d_loss"] = disc["total"]
        if self.plateaus:
            context = tf.distribute.get_replica_context()
            end_of_epoch = (self.step + 1) % self.steps_per_epoch == 0
            for name, optimizer, value in (("g", self.g_optimizer, g["total"]), ("d", self.d_optimizer, disc["total"])):
                mean = context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.cast(value, tf.float32))
                self.plateaus[name].record(mean, optimizer, end_of_epoch)
        metrics["learning_rate"] = self.g_optimizer.learning_rate
        return metrics

    def sample_images(self):
        """One grid per direction: rows of real | translated | reconstructed, in [0, 1]."""
        if self._samples is None:
            self._samples = {
                d: data.unpaired_test_images(self.config.data, d[0].upper(), self.config.num_samples)
                for d in self.generators
            }
        return {
            (d + d[0] if d[::-1] in self.generators else d): self._translation_grid(d, images)
            for d, images in self._samples.items()
        }

    # -- the maths --------------------------------------------------------------
    @staticmethod
    def _variables(nets):
        return [v for net in nets.values() for v in net.trainable_variables]

    def _generator_losses(self, real):
        """The generator objective of the module docstring, for both or one direction."""
        c = self.config
        generator_loss, _ = self.gan_losses
        out = {"gan_g": 0.0, "cycle": 0.0, "identity": 0.0}
        for d, generator in self.generators.items():
            source, target = real[d[0]], real[d[-1]]
            fake = generator(source)
            out["fake_" + d] = fake
            out["gan_g"] += generator_loss(self.discriminators[d](fake))
            inverse = self.generators.get(d[::-1])
            if inverse is not None:
                out["cycle"] += losses.cycle_consistency_loss(source, inverse(fake))
            if c.lambda_identity > 0:
                out["identity"] += losses.identity_loss(target, generator(target))
        out["total"] = out["gan_g"] + c.lambda_cycle * (out["cycle"] + c.lambda_identity * out["identity"])
        return out

    def _discriminator_losses(self, real, fakes):
        _, discriminator_loss = self.gan_losses
        total = 0.0
        for d, net in self.discriminators.items():
            total += discriminator_loss(net(real[d[-1]]), net(fakes[d]))
        return {"total": total}

    def _translation_grid(self, direction, images):
        forward = self.generators[direction](images, training=False)
        row = [images, forward]
        inverse = self.generators.get(direction[::-1])
        if inverse is not None:
            row.append(inverse(forward, training=False))
        return (tf.concat(row, axis=2) + 1.0) / 2.0


def train(config, *, strategy=None, flags_text=None):
    """Train a CycleGAN into ``config.output_dir`` (resuming it); returns a base.TrainResult.

    Without ``strategy``, :func:`base.make_strategy` picks one before any other
    TensorFlow work. ``flags_text`` is written to ``flags.txt``.
    """
    return CycleGANTrainer(config, strategy).train(flags_text=flags_text)
