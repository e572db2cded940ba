"""Training AdaIN (Huang & Belongie 2017): the decoder of an :class:`ArbitraryStyleNet`.

Each step pairs a batch of photos ``c`` with a batch of paintings ``s``
(:func:`nst_tf.data.content_style_dataset`), encodes both with the frozen VGG ``f``,
decodes ``t = AdaIN(f(c), f(s))`` and minimises :class:`nst_tf.losses.PerceptualLoss`
with Huang & Belongie's settings (:meth:`nst_tf.losses.LossConfig.huang`):

    L = ||f(g(t)) - t||² / (C H W) + λ Σ_{l = relu1_1 .. relu4_1} [MSE(μ(φ_l(g(t))), μ(φ_l(s)))
                                                              + MSE(σ(φ_l(g(t))), σ(φ_l(s)))]

with λ = 10, each output against its own painting. The content layer of the loss is the
encoder's output, so ``--content_layers`` picks the encoder depth (relu4_1 by default) and
the decoder mirrors the encoder up to it. Adam with inverse-time decay, ``lr / (1 + d n)``
at step ``n``, as naoto0804/pytorch-AdaIN trains (``d = 5e-5``).
"""

import dataclasses
from typing import Optional
from typing import Sequence

import keras
import tensorflow as tf

from nst_tf import data
from nst_tf import losses
from nst_tf.config import option
from nst_tf.data import PhotoDataConfig
from nst_tf.models.arbitrary import ArbitraryStyleNet
from nst_tf.models.arbitrary import StyleVector
from nst_tf.models.arbitrary import encoder_spec
from nst_tf.training import base


@dataclasses.dataclass
class ArbitraryConfig(base.TrainConfig):
    """An AdaIN training run: the generic run settings of :class:`base.TrainConfig`, the photos and
    paintings, the loss (Huang & Belongie's by default), the decoder's width and the optimiser.

    The defaults are the paper's recipe: 512 px resize, 256 px crops, batch 8, Adam 1e-4 with
    inverse-time decay 5e-5, 160k steps, VGG19 to relu4_1.
    """

    max_steps: int = option(160000, "Total training steps (including steps of a resumed run).", min=1)
    content_dir: Optional[str] = option(
        None,
        "Folder of content photos (searched recursively); without it the photos come from tfds --tfds_name.",
    )
    style_dirs: Sequence[str] = option(
        (), "Folder of paintings, searched recursively (repeat for several).", flag="style_dir", multi=True
    )
    style_exclude: Sequence[str] = option(
        (),
        "File-name patterns of paintings under --style_dir to keep out of training (held out), "
        "e.g. the_scream.jpg,starry_night.jpg.",
    )
    # Photos and paintings share the crop settings; the photos' order follows the run's seed and
    # their folder is --content_dir.
    data: PhotoDataConfig = dataclasses.field(
        default_factory=lambda: PhotoDataConfig(image_size=256, load_size=512),
        metadata={"set_by_parent": ("seed", "train_dir")},
    )
    loss: losses.LossConfig = dataclasses.field(default_factory=losses.LossConfig.huang)
    width: float = option(1.0, "Multiplier of the decoder's hidden channels (1: the paper's decoder).", min=0.01)
    batch_size: int = option(8, "Global batch size (split over replicas).", min=1)
    learning_rate: float = option(1e-4, "Adam learning rate at step 0.", min=0.0)
    lr_decay: float = option(5e-5, "Inverse-time decay d: the learning rate at step n is lr / (1 + d n).", min=0.0)
    num_samples: int = option(4, "Photos and paintings of the TensorBoard sample grid (n x n results).", min=1)

    def __post_init__(self):
        super().__post_init__()
        if (self.data.seed, self.data.train_dir) != (self.seed, self.content_dir):
            self.data = dataclasses.replace(self.data, seed=self.seed, train_dir=self.content_dir)
        content, style = self.loss.layers()
        order = encoder_spec(self.loss.feature_extractor).selectable_layers
        deepest = max((order.index(n) for n in style if n in order), default=-1)
        base.check_all(
            [
                (bool(self.style_dirs), "--style_dir", "give at least one folder of paintings"),
                (len(content) == 1, "--content_layers", f"one layer, the encoder's output (got {len(content)})"),
                (
                    content[0] not in order or deepest <= order.index(content[0]),
                    "--style_layers",
                    f"must not be deeper than the encoder's output --content_layers={content[0]}",
                ),
                (self.width > 0, "--width", f"must be > 0, not {self.width}"),
                (self.batch_size >= 1, "--batch_size", f"must be >= 1, not {self.batch_size}"),
                (self.learning_rate >= 0, "--learning_rate", f"must be >= 0, not {self.learning_rate}"),
                (self.lr_decay >= 0, "--lr_decay", f"must be >= 0, not {self.lr_decay}"),
                (self.num_samples >= 1, "--num_samples", f"must be >= 1, not {self.num_samples}"),
            ]
        )


def loss_terms(model, loss, content, style):
    """AdaIN's objective, ``{"total": ..., **terms}``: ``loss`` (a :class:`~nst_tf.losses.PerceptualLoss`
    on ``model.encoder``) of ``g(t)`` against ``t = AdaIN(f(content), f(style))`` at the encoder's
    last layer and against the paintings' channel statistics, one painting per photo."""
    layer = model.layer
    style_features = model.encoder(style)
    t = model.transfer(model.encode(content), StyleVector.of_features(style_features[layer]))
    total, terms = loss(
        model.decode(t), losses.ContentTarget(content, {layer: t}), loss.style_loss.statistics(style_features)
    )
    return {"total": total, **terms}


class ArbitraryTrainer(base.Trainer):
    """Trains the decoder of an :class:`ArbitraryStyleNet`; the encoder stays frozen."""

    method = "arbitrary"

    # -- base.Trainer hooks ---------------------------------------------------
    def prepare(self):
        self.style_paths = data.style_files(self.config.style_dirs, self.config.style_exclude)
        data.photo_source(
            self.config.data, data.CONTENT_FOLDER_FLAG
        )  # fail on a bad --content_dir/--tfds_name before building anything
        self._samples = None

    def build(self):
        cfg = self.config
        keras.utils.set_random_seed(cfg.seed)
        (layer,), _ = cfg.loss.layers()
        self.model = ArbitraryStyleNet(
            cfg.loss.feature_extractor, layer=layer, pooling=cfg.loss.pooling, width=cfg.width, weights=cfg.loss.weights
        )
        # The loss reads relu1_1 .. relu4_1 from the model's own encoder: one pass per image.
        self.loss = losses.PerceptualLoss(cfg.loss, extractor=self.model.encoder)
        schedule = keras.optimizers.schedules.InverseTimeDecay(
            cfg.learning_rate, decay_steps=1, decay_rate=cfg.lr_decay
        )
        self.optimizer = self.make_optimizer(keras.optimizers.Adam(learning_rate=schedule))
        self.optimizer.build(self.model.decoder.trainable_variables)
        self.models = {"model": self.model}
        return {"model": self.model, "optimizer": self.optimizer}

    def make_dataset(self, input_context):
        fn = data.content_style_dataset_fn(
            self.config.data, self.style_paths, self.config.batch_size, start=int(self.data_position.numpy())
        )
        return fn(input_context)

    def loss_terms(self, content, style):
        """``{"total": ..., **terms}`` of the decoder on photos ``content`` in the styles of
        paintings ``style`` (one painting per photo), both ``[B, S, S, 3]`` in [0, 1]."""
        return loss_terms(self.model, self.loss, content, style)

    def train_step(self, batch):
        metrics = self.minimize(
            lambda: self.loss_terms(batch["content"], batch["style"]),
            self.optimizer,
            self.model.decoder.trainable_variables,
        )
        metrics["learning_rate"] = self.optimizer.learning_rate
        return metrics

    def sample_images(self):
        """``{"grid": [1, (n+1) S, (n+1) S, 3]}``: the paintings along the top, the photos down the
        left, and each photo in each painting's style, for ``num_samples = n`` fixed pairs."""
        n = self.config.num_samples
        if self._samples is None:
            batch = next(iter(data.content_style_dataset(self.config.data, self.style_paths, n)))
            self._samples = batch["content"], batch["style"]
        photos, paintings = self._samples
        vectors = self.model.style_vector(paintings)
        rows = [tf.concat([tf.ones_like(paintings[:1]), paintings], 0)]
        for i in range(n):
            stylized = self.model.stylize(tf.repeat(photos[i : i + 1], n, axis=0), vectors)
            rows.append(tf.concat([photos[i : i + 1], stylized], 0))
        grid = tf.stack(rows)  # [n+1 rows, n+1 columns, S, S, 3]
        size = grid.shape[2]
        grid = tf.transpose(grid, [0, 2, 1, 3, 4])
        return {"grid": tf.reshape(grid, [1, (n + 1) * size, (n + 1) * size, 3])}


def train(config, *, strategy=None, flags_text=None):
    """Train AdaIN's decoder into ``config.output_dir`` (resuming it); returns a base.TrainResult.

    Without ``strategy``, :func:`base.make_strategy` picks one before any other
    TensorFlow work. ``flags_text`` is written to ``flags.txt``.
    """
    return ArbitraryTrainer(config, strategy).train(flags_text=flags_text)
