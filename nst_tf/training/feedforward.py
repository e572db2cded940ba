"""Training the feed-forward style nets: Johnson et al. 2016 and Dumoulin et al. 2017.

One loop serves both. A :class:`TransformNet` learns one style; a
:class:`MultiStyleNet` learns N styles at once (each photo of a batch draws a
style index, the net gets its one-hot style weights), or learns new styles on
top of a trained net while only the new styles' gamma/beta move
(``base_dir``: the "incremental" training of the HKU COMP 3359 report).

The loss is :class:`nst_tf.losses.PerceptualLoss` with Johnson's settings
(:meth:`nst_tf.losses.LossConfig.johnson`) by default, on a frozen VGG16:

    L = a * l_feat(relu2_2) + b * s(t) * sum_j w_j / C_j^2 * ||G_j(y) - G_j(y_s)||_F^2
        + c * TV(255 y) + d * ||y - x||^2 / (C H W)

with Grams normalised by C_j H_j W_j (Johnson units, see :mod:`nst_tf.losses`),
so his weights (content 1, style 5, TV 1e-6 on 0-255 pixels) carry over. ``s(t)``
is 1, or the optional staged schedule: ``warmup_steps`` of content only, then the
style weight ramps in linearly over ``style_ramp_steps`` while the learning rate
halves every ``lr_halve_every`` steps.
"""

import dataclasses
import os
from typing import Optional
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from nst_tf import data
from nst_tf import evaluation
from nst_tf import images
from nst_tf import losses
from nst_tf import models
from nst_tf import schedules
from nst_tf.config import option
from nst_tf.data import PhotoDataConfig
from nst_tf.errors import NSTError
from nst_tf.training import base

SAMPLE_STYLES = 4  # TensorBoard shows the sample photos in at most this many styles


@dataclasses.dataclass
class FeedForwardConfig(base.TrainConfig):
    """A feed-forward training run: the generic run settings of :class:`base.TrainConfig`,
    and what the run learns, from which data, with which schedule.

    ``style_images`` come from ``--style``, or from ``--add_style`` when
    ``base_dir`` names the trained multi-style run they are added to.
    """

    style_images: Sequence[str] = option((), "Style image (repeat for each style).", flag="style", multi=True)
    # The photos' order and crops follow the run's seed.
    data: PhotoDataConfig = dataclasses.field(default_factory=PhotoDataConfig, metadata={"set_by_parent": ("seed",)})
    # Johnson et al.'s loss network, layers and weights by default.
    loss: losses.LossConfig = dataclasses.field(default_factory=losses.LossConfig.johnson)
    style_size: int = option(256, "Longest side of the style images for their Gram targets.", min=32)
    multistyle: bool = option(False, "A conditional-instance-norm net for several styles (Dumoulin et al.).")
    base_dir: Optional[str] = option(
        None,
        "With --add_style: the output dir of a trained multi-style run "
        "(left unchanged; the result goes to --output_dir).",
    )
    width: float = option(1.0, "Width multiplier of the style net's channels.", min=0.01)
    num_residual_blocks: int = option(5, "Residual blocks in the style net.", min=0)
    batch_size: int = option(4, "Global batch size (split over replicas).", min=1)
    learning_rate: float = option(1e-3, "Adam learning rate.", min=0.0)
    warmup_steps: int = option(0, "Staged schedule: content-only steps before the style loss starts.", min=0)
    style_ramp_steps: int = option(
        0, "Staged schedule: steps over which the style weight ramps to --style_weight after the warm-up.", min=0
    )
    lr_halve_every: int = option(
        0, "Staged schedule: halve the learning rate every N steps after the warm-up (0: constant).", min=0
    )
    eval_dir: Optional[str] = option(
        None,
        "Held-out photos (a folder, a few images): every --eval_every steps their nst-eval "
        "metrics against each trained style go to TensorBoard (eval/<style>/...).",
    )
    eval_every: int = option(1000, "Evaluate on --eval_dir every N steps and at the last step.", min=1)
    eval_size: int = option(
        256, "Longest side the --eval_dir photos are stylized and measured at.", min=images.MIN_SIDE
    )

    def __post_init__(self):
        super().__post_init__()
        if self.data.seed != self.seed:
            self.data = dataclasses.replace(self.data, seed=self.seed)
        style_flag = "--add_style" if self.base_dir else "--style"
        count = len(self.style_images)
        base.check_all(
            [
                (count >= 1, style_flag, "give at least one style image"),
                (
                    self.multistyle or self.base_dir or count == 1,
                    "--style",
                    f"a fast (single-style) net takes one style image, got {count}",
                ),
                (
                    not self.base_dir or os.path.abspath(self.base_dir) != os.path.abspath(self.output_dir),
                    "--output_dir",
                    "must differ from --base_dir (the base model stays unchanged)",
                ),
                (self.width > 0, "--width", f"must be > 0, not {self.width}"),
                (
                    self.num_residual_blocks >= 0,
                    "--num_residual_blocks",
                    f"must be >= 0, not {self.num_residual_blocks}",
                ),
                (self.batch_size >= 1, "--batch_size", f"must be >= 1, not {self.batch_size}"),
                (self.learning_rate >= 0, "--learning_rate", f"must be >= 0, not {self.learning_rate}"),
                (self.warmup_steps >= 0, "--warmup_steps", f"must be >= 0, not {self.warmup_steps}"),
                (self.style_ramp_steps >= 0, "--style_ramp_steps", f"must be >= 0, not {self.style_ramp_steps}"),
                (self.lr_halve_every >= 0, "--lr_halve_every", f"must be >= 0, not {self.lr_halve_every}"),
                (self.eval_every >= 1, "--eval_every", f"must be >= 1, not {self.eval_every}"),
                (
                    self.eval_size >= images.MIN_SIDE,
                    "--eval_size",
                    f"must be at least {images.MIN_SIDE}, not {self.eval_size}",
                ),
            ]
        )


def load_style_images(paths, style_size):
    """The style images, longest side ``style_size``; NSTError naming a bad file."""
    return [images.load_image(path, max_side=style_size) for path in paths]


def load_eval_photos(folder, eval_size):
    """The held-out photos of ``--eval_dir``, longest side ``eval_size``; NSTError naming a bad one."""
    try:
        paths = images.list_images(folder)
    except NSTError as error:
        raise NSTError(f"--eval_dir: {error}") from None
    if not paths:
        raise NSTError(f"--eval_dir: {folder}: no image files")
    return [images.load_image(path, max_side=eval_size) for path in paths]


def style_name(path):
    return os.path.splitext(os.path.basename(path))[0]


class FeedForwardTrainer(base.Trainer):
    """Trains a TransformNet (one style) or a MultiStyleNet (several, or added ones)."""

    # -- base.Trainer hooks ---------------------------------------------------
    def prepare(self):
        config = self.config
        self.method = "multistyle" if config.multistyle or config.base_dir else "fast"
        self._style_images = load_style_images(config.style_images, config.style_size)
        data.photo_source(config.data)  # fail on a bad --train_dir/--tfds_name before building anything
        self._sample_photos = None
        self._eval_photos = load_eval_photos(config.eval_dir, config.eval_size) if config.eval_dir else []
        # The paintings at the measuring scale; nst-eval resizes them to each output's longest side.
        self._eval_styles = load_style_images(config.style_images, config.eval_size) if config.eval_dir else []
        self._eval_extractor = None

    def build(self):
        cfg = self.config
        keras.utils.set_random_seed(self.config.seed)
        new_names = [style_name(p) for p in cfg.style_images]
        if cfg.base_dir:
            self.model, old_names = self._expand_base_model(len(new_names))
            self.first_style = len(old_names)
            self.style_names = old_names + new_names
            variables = self.model.style_variables(range(self.first_style, len(self.style_names)))
        else:
            self.first_style = 0
            self.style_names = new_names
            if self.method == "fast":
                self.model = models.TransformNet(width=cfg.width, num_residual_blocks=cfg.num_residual_blocks)
            else:
                self.model = models.MultiStyleNet(
                    len(new_names), width=cfg.width, num_residual_blocks=cfg.num_residual_blocks
                )
            variables = self.model.trainable_variables
        self.train_variables = variables
        self.loss = losses.PerceptualLoss(cfg.loss)
        # [num_styles, C, C] per layer; a batch gathers each photo's target.
        self.style_targets = self.loss.style_target(self._style_images)
        schedule = schedules.HalvingSchedule(cfg.learning_rate, start=cfg.warmup_steps, every=cfg.lr_halve_every)
        self.optimizer = self.make_optimizer(keras.optimizers.Adam(learning_rate=schedule))
        self.optimizer.build(variables)
        self.models = {"model": self.model}
        return {"model": self.model, "optimizer": self.optimizer}

    def _expand_base_model(self, count):
        base_dir = self.config.base_dir
        description = base.read_model_config(base_dir)
        if description.get("method") != "multistyle":
            raise NSTError(f"--base_dir: {base_dir} is not a multi-style run (method {description.get('method')!r})")
        base_model = base.load_trained_model(base_dir, "model")
        return base_model.expand(count), list(description.get("style_names", []))

    def make_dataset(self, input_context):
        fn = data.photo_dataset_fn(self.config.data, self.config.batch_size, start=int(self.data_position.numpy()))
        return fn(input_context)

    def loss_terms(self, outputs, photos, style_index, style_weight_scale=1.0):
        """``{"total": ..., **terms}`` of stylized ``outputs`` of ``photos`` in trained styles
        ``style_index`` ([B], counted from the first trained style)."""
        total, terms = self.loss(
            outputs, self.loss.content_target(photos), self.style_targets, style_index, style_weight_scale
        )
        return {"total": total, **terms}

    def stylize(self, photos, style_index):
        """The net's output for ``photos`` in model styles ``style_index`` ([B] ints)."""
        if self.method == "fast":
            return self.model(photos)
        return self.model((photos, tf.one_hot(style_index, len(self.style_names))))

    def train_step(self, batch):
        photos = batch["images"]
        n = tf.shape(photos)[0]
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = self.step_seed(salt=1000 * replica)
        trained = len(self.style_names) - self.first_style
        # Which of the trained styles each photo gets; deterministic per step.
        index = tf.random.stateless_uniform([n], seed=seed, maxval=trained, dtype=tf.int32)
        scale = schedules.style_weight_scale(self.step, self.config.warmup_steps, self.config.style_ramp_steps)

        def loss_fn():
            outputs = self.stylize(photos, index + self.first_style)
            return self.loss_terms(outputs, photos, index, scale)

        metrics = self.minimize(loss_fn, self.optimizer, self.train_variables)
        metrics["learning_rate"] = self.optimizer.learning_rate
        if self.config.warmup_steps or self.config.style_ramp_steps:
            metrics["style_scale"] = scale
        return metrics

    def sample_images(self):
        if self._sample_photos is None:
            batch = next(iter(data.photo_dataset(self.config.data, 4)))
            self._sample_photos = batch["images"]
        photos = self._sample_photos
        samples = {"photos": photos}
        for i in range(self.first_style, min(len(self.style_names), self.first_style + SAMPLE_STYLES)):
            index = tf.fill([tf.shape(photos)[0]], i)
            samples[f"style_{self.style_names[i]}"] = self.stylize(photos, index)
        return samples

    def eval_due(self, step):
        return bool(self._eval_photos) and (step % self.config.eval_every == 0 or step == self.config.max_steps)

    def evaluate(self):
        """The median nst-eval metrics of the held-out photos in each trained style.

        Measured in float32 on the loss's own network and layers
        (:meth:`evaluation.EvalConfig.of_loss`), as ``nst-eval`` would measure
        ``nst-stylize --model`` outputs at ``--eval_size``, with the per-layer
        style ratios beside the summary ones.
        """
        eval_config = evaluation.EvalConfig.of_loss(self.config.loss)
        if self._eval_extractor is None:
            # A mixed-precision run's own loss network computes in 16 bits.
            reuse = self.compute_precision == "float32"
            self._eval_extractor = self.loss.extractor if reuse else evaluation.build_extractor(eval_config)
        metrics = {}
        for i, painting in enumerate(self._eval_styles):
            index = self.first_style + i
            results = []
            for photo in self._eval_photos:
                output = self.stylize(tf.constant(photo[None]), tf.constant([index]))
                output = np.clip(np.asarray(tf.cast(output, tf.float32))[0], 0.0, 1.0)
                results.append(
                    evaluation.evaluate(output, photo, painting, config=eval_config, extractor=self._eval_extractor)
                )
            layers = tuple(name for name in results[0] if name.startswith("style_gram_ratio/"))
            for name, value in evaluation.median_metrics(results, evaluation.SUMMARY_METRICS + layers).items():
                metrics[f"{self.style_names[index]}/{name}"] = value
        return metrics


def train(config, *, strategy=None, flags_text=None):
    """Train a feed-forward net into ``config.output_dir`` (resuming it); returns a base.TrainResult.

    Without ``strategy``, :func:`base.make_strategy` picks one before any other
    TensorFlow work. ``flags_text`` is written to ``flags.txt``.
    """
    return FeedForwardTrainer(config, strategy).train(flags_text=flags_text)
