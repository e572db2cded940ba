"""Training the feed-forward style nets: Johnson et al. 2016 and Dumoulin et al. 2017.

One loop serves both. A :class:`TransformNet` learns one style; a
:class:`MultiStyleNet` learns N styles at once (each photo of a batch draws a
style index, the net gets its one-hot style weights), or learns new styles on
top of a trained net while only the new styles' gamma/beta move
(``base_dir``: the "incremental" training of seed 004).

The loss is Johnson's perceptual loss on a frozen VGG16:

    L = a * l_feat(relu2_2) + b * s(t) * sum_j w_j / C_j^2 * ||G_j(y) - G_j(y_s)||_F^2
        + c * TV(255 y) + d * ||y - x||^2 / (C H W)

with Grams normalised by C_j H_j W_j. Dividing each layer by C_j^2 makes it the
mean over the Gram's entries, as Johnson's Torch code computes it, so his
weights (content 1, style 5, TV 1e-6 on 0-255 pixels) carry over. ``s(t)`` is
1, or the optional staged schedule of seed 004: ``warmup_steps`` of content
only, then the style weight ramps in linearly over ``style_ramp_steps`` while
the learning rate halves every ``lr_halve_every`` steps.
"""

import dataclasses
import os
from typing import Optional, Sequence

import keras
import tensorflow as tf

from nst_tf import data, features, images, losses, models
from nst_tf.config import option
from nst_tf.data import PhotoDataConfig
from nst_tf.errors import NSTError
from nst_tf.training import base

JOHNSON_CONTENT_LAYERS = ("block2_conv2",)
JOHNSON_STYLE_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")
SAMPLE_STYLES = 4  # TensorBoard shows the sample photos in at most this many styles


@dataclasses.dataclass
class PerceptualLossConfig:
    """The loss network, its layers and the weights of the loss terms."""

    feature_extractor: str = option("vgg16", "Loss network.", choices=tuple(features.EXTRACTORS))
    weights: Optional[str] = option("imagenet", "Loss-network weights: 'imagenet' (Keras cache), a Keras "
                                    "no-top .weights.h5 file, or 'none' (random, for tests).")
    content_layers: Optional[Sequence[str]] = option(
        None, "Content layers (names or conv indices); default relu2_2 (block2_conv2) for VGG, the "
        "extractor's default otherwise.")
    style_layers: Optional[Sequence[str]] = option(
        None, "Style layers; default relu1_2, relu2_2, relu3_3, relu4_3 for VGG.")
    style_layer_weights: Optional[Sequence[float]] = option(
        None, "One weight per style layer (default all 1).")
    content_weight: float = option(1.0, "Weight of the feature (content) loss.", min=0.0)
    style_weight: float = option(5.0, "Weight of the style (Gram) loss.", min=0.0)
    tv_weight: float = option(1e-6, "Weight of the total-variation loss (on 0-255 pixels).", min=0.0)
    pixel_weight: float = option(0.0, "Weight of a per-pixel loss to the input photo.", min=0.0)
    style_size: int = option(256, "Longest side of the style images for their Gram targets.", min=32)


@dataclasses.dataclass
class FeedForwardConfig:
    """What a feed-forward training run learns, from which data, with which schedule."""

    style_images: Sequence[str] = option(help="Style image (repeat for each style).", flag="style", multi=True)
    data: PhotoDataConfig = dataclasses.field(default_factory=PhotoDataConfig)
    loss: PerceptualLossConfig = dataclasses.field(default_factory=PerceptualLossConfig)
    multistyle: bool = option(False, "A conditional-instance-norm net for several styles (Dumoulin et al.).")
    base_dir: Optional[str] = option(None, "With --add_style: the output dir of a trained multi-style run "
                                     "(left unchanged; the result goes to --output_dir).")
    width: float = option(1.0, "Width multiplier of the style net's channels.", min=0.01)
    num_residual_blocks: int = option(5, "Residual blocks in the style net.", min=0)
    batch_size: int = option(4, "Global batch size (split over replicas).", min=1)
    learning_rate: float = option(1e-3, "Adam learning rate.", min=0.0)
    warmup_steps: int = option(0, "Staged schedule: content-only steps before the style loss starts.", min=0)
    style_ramp_steps: int = option(0, "Staged schedule: steps over which the style weight ramps to "
                                   "--style_weight after the warm-up.", min=0)
    lr_halve_every: int = option(0, "Staged schedule: halve the learning rate every N steps after the "
                                 "warm-up (0: constant).", min=0)


def loss_layers(config):
    """``(content_layers, style_layers)`` as Keras names: Johnson's for VGG unless overridden.

    Extractors without Johnson's layers (ResNet50) default to their own
    :func:`nst_tf.features.default_layers`.
    """
    name = config.feature_extractor
    if name.startswith("vgg"):
        content, style = JOHNSON_CONTENT_LAYERS, JOHNSON_STYLE_LAYERS
    else:
        content, style = features.default_layers(name)
    return (
        features.resolve_layers(name, config.content_layers or content),
        features.resolve_layers(name, config.style_layers or style),
    )


def style_weight_scale(step, warmup_steps, ramp_steps):
    """s(t): 0 during the content-only warm-up, then a linear ramp to 1 over ``ramp_steps``."""
    t = tf.cast(step, tf.float32) - float(warmup_steps)
    if ramp_steps <= 0:
        return tf.cast(t >= 0.0, tf.float32)
    return tf.clip_by_value((t + 1.0) / float(ramp_steps), 0.0, 1.0)


@keras.saving.register_keras_serializable(package="nst_tf")
class HalvingSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(t) = lr0 * 0.5 ** floor(max(0, t - start) / every)``; constant when ``every`` is 0."""

    def __init__(self, initial_learning_rate, start=0, every=0):
        self.initial_learning_rate = float(initial_learning_rate)
        self.start = int(start)
        self.every = int(every)

    def __call__(self, step):
        lr = tf.constant(self.initial_learning_rate, tf.float32)
        if self.every <= 0:
            return lr
        halvings = tf.floor(tf.maximum(0.0, tf.cast(step, tf.float32) - self.start) / self.every)
        return lr * tf.pow(0.5, halvings)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "start": self.start, "every": self.every}


class PerceptualLoss:
    """Johnson's perceptual loss against style targets computed once (see the module docstring)."""

    def __init__(self, config, style_images):
        self.config = config
        content, style = loss_layers(config)
        if config.style_layer_weights is not None and len(config.style_layer_weights) != len(style):
            raise NSTError(
                f"--style_layer_weights: {len(config.style_layer_weights)} weights for {len(style)} style layers"
            )
        self.extractor = features.build_feature_extractor(
            config.feature_extractor, layers=list(dict.fromkeys(content + style)), weights=config.weights
        )
        # The content photos only need the (shallow) content layers: a sub-model
        # sharing the extractor's layers skips the deeper ones.
        self.content_extractor = keras.Model(
            self.extractor.input, {name: self.extractor.output[name] for name in content}
        )
        self.content_layers = content
        style_features = [self.extractor(tf.constant(image[None])) for image in style_images]
        # [num_styles, C, C] per layer; a batch gathers each photo's target.
        self.target_grams = {
            name: tf.concat([losses.gram_matrix(f[name], normalize=True) for f in style_features], axis=0)
            for name in style
        }
        user_weights = config.style_layer_weights or [1.0] * len(style)
        self.style_layer_weights = {
            name: float(w) / float(self.target_grams[name].shape[-1]) ** 2 for name, w in zip(style, user_weights)
        }

    def __call__(self, outputs, photos, style_index, style_scale=1.0):
        """The loss terms for stylized ``outputs`` of ``photos`` in styles ``style_index`` ([B])."""
        cfg = self.config
        out = self.extractor(outputs)
        target = self.content_extractor(photos)
        content = tf.add_n(
            [losses.content_loss(out[n], target[n], reduction="mean") for n in self.content_layers]
        )
        grams = {name: tf.gather(g, style_index) for name, g in self.target_grams.items()}
        style = losses.perceptual_style_loss(out, grams, self.style_layer_weights)
        # On 0-255 values, the scale of Johnson's TV weights.
        tv = losses.total_variation_loss(tf.cast(outputs, tf.float32) * 255.0)
        terms = {"content_loss": content, "style_loss": style, "tv_loss": tv}
        total = cfg.content_weight * content + cfg.style_weight * style_scale * style + cfg.tv_weight * tv
        if cfg.pixel_weight:
            terms["pixel_loss"] = tf.reduce_mean(tf.square(tf.cast(outputs, tf.float32) - photos))
            total += cfg.pixel_weight * terms["pixel_loss"]
        return {"loss": total, **terms}


def load_style_images(paths, style_size):
    """The style images, longest side ``style_size``; NSTError naming a bad file."""
    if not paths:
        raise NSTError("--style: give at least one style image")
    return [images.load_image(path, max_side=style_size) for path in paths]


def style_name(path):
    return os.path.splitext(os.path.basename(path))[0]


class FeedForwardTrainer(base.Trainer):
    """Trains a TransformNet (one style) or a MultiStyleNet (several, or added ones)."""

    def __init__(self, train_config, config, strategy=None):
        self.ff = config
        self.method = "multistyle" if config.multistyle or config.base_dir else "fast"
        if self.method == "fast" and len(config.style_images) != 1:
            raise NSTError(f"--style: a fast (single-style) net takes one style image, got {len(config.style_images)}")
        if config.base_dir and os.path.abspath(config.base_dir) == os.path.abspath(train_config.output_dir):
            raise NSTError("--output_dir: must differ from --base_dir (the base model stays unchanged)")
        self._style_images = load_style_images(config.style_images, config.loss.style_size)
        data.photo_source(config.data)  # fail on a bad --train_dir/--tfds_name before building anything
        self._sample_photos = None
        super().__init__(train_config, strategy)

    # -- base.Trainer hooks ---------------------------------------------------
    def build(self):
        cfg = self.ff
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
        self.loss = PerceptualLoss(cfg.loss, self._style_images)
        schedule = HalvingSchedule(cfg.learning_rate, start=cfg.warmup_steps, every=cfg.lr_halve_every)
        self.optimizer = self.make_optimizer(keras.optimizers.Adam(learning_rate=schedule))
        self.optimizer.build(variables)
        self.models = {"model": self.model}
        return {"model": self.model, "optimizer": self.optimizer}

    def _expand_base_model(self, count):
        description = base.read_model_config(self.ff.base_dir)
        if description.get("method") != "multistyle":
            raise NSTError(f"--base_dir: {self.ff.base_dir} is not a multi-style run (method {description.get('method')!r})")
        base_model = base.load_trained_model(self.ff.base_dir, "model")
        return base_model.expand(count), list(description.get("style_names", []))

    def make_dataset(self, input_context):
        fn = data.photo_dataset_fn(self.ff.data, self.ff.batch_size, start=int(self.data_position.numpy()))
        return fn(input_context)

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
        scale = style_weight_scale(self.step, self.ff.warmup_steps, self.ff.style_ramp_steps)

        def loss_fn():
            outputs = self.stylize(photos, index + self.first_style)
            return self.loss(outputs, photos, index, scale)

        metrics = self.minimize(loss_fn, self.optimizer, self.train_variables)
        metrics["learning_rate"] = self.optimizer.learning_rate
        if self.ff.warmup_steps or self.ff.style_ramp_steps:
            metrics["style_scale"] = scale
        return metrics

    def sample_images(self):
        if self._sample_photos is None:
            batch = next(iter(data.photo_dataset(self.ff.data, 4)))
            self._sample_photos = batch["images"]
        photos = self._sample_photos
        samples = {"photos": photos}
        for i in range(self.first_style, min(len(self.style_names), self.first_style + SAMPLE_STYLES)):
            index = tf.fill([tf.shape(photos)[0]], i)
            samples[f"style_{self.style_names[i]}"] = self.stylize(photos, index)
        return samples


def train(train_config, config, flags_text=None, strategy=None):
    """Train a feed-forward net into ``train_config.output_dir``; returns a base.TrainResult."""
    trainer = FeedForwardTrainer(train_config, config, strategy)
    return trainer.train(flags_text=flags_text, desc=trainer.method)
