"""Every loss of nst_tf: the perceptual losses of all style-transfer methods, and CycleGAN's.

Notation follows Gatys et al. 2016, "Image Style Transfer Using Convolutional
Neural Networks" (CVPR): layer ``l`` has ``N_l`` feature maps (channels) of
``M_l`` positions (height x width); ``F^l`` is the ``N_l x M_l`` feature matrix
of the generated image, ``P^l`` that of the content image. Feature maps are
NHWC tensors.

Three levels, each built on the one before:

* Pure functions, one formula each: :func:`gram_matrix`, :func:`content_loss`,
  :func:`style_layer_loss`, :func:`total_variation_loss`, :func:`laplacian_loss`
  and the GAN, cycle and identity losses. Each returns a float32 scalar: the
  per-image loss averaged over the batch, so a batch of one gives exactly the
  paper's value. Features are cast to float32 first so the losses stay exact
  under mixed precision.
* :class:`ContentLoss` and :class:`StyleLoss`: those formulas over several
  layers with per-layer weights, on the feature dicts of any extractor.
  Style targets may blend several styles (Gatys et al.) or stack them, one
  per image of a batch (Dumoulin et al.'s multi-style training).
* :class:`PerceptualLoss`: the weighted sum that every method minimises, on a
  frozen feature network, described by a :class:`LossConfig`. Gatys' objective
  (:mod:`nst_tf.gatys`), the feed-forward trainers and the exported
  ``features``/``gatys`` models all evaluate it.

Every Gram matrix is taken per position, ``Ĝ^l = F^lᵀF^l / M_l``, so a style
image and an output with different numbers of positions (another aspect ratio,
any ``--style_scale`` but 1) are compared on the same footing, as Gatys'
reference code and jcjohnson/neural-style do. A style layer's loss is

    E_l = s_l Σ_ij (Ĝ^l_ij - Â^l_ij)²

with the scale ``s_l`` set by the units (:data:`UNITS`):

* ``"gatys"``: ``s_l = 1 / (4 N_l²)``. When the style image has as many
  positions as the output, ``Â = A / M_l`` and

      1/(4 N_l²) Σ (Ĝ - Â)² = 1/(4 N_l² M_l²) Σ (G - A)²,

  Gatys et al. eq. (4) exactly, so α/β keep the paper's meaning. Layer
  weights default to ``1/L``.
* ``"johnson"``: ``s_l = 1 / N_l⁴``. Johnson et al. 2016 normalise the Gram
  by ``C H W`` (eq. 3), ``G_J = Ĝ / N_l``, and their Torch code divides each
  layer's squared distance by ``N_l²`` (the mean over the Gram's entries), so

      1/N_l² Σ (G_J - A_J)² = 1/N_l⁴ Σ (Ĝ - Â)²,

  and their published weights (content 1, style 5, TV 1e-6 on 0-255 pixels)
  keep working. Layer weights default to 1; TV is taken on 0-255 pixels.
* ``"huang"``: ``s_l = 1 / N_l``. With the ``"mean_std"`` statistic (:func:`mean_std`,
  ``[2, N_l]`` per image) the layer's loss is

      1/N_l Σ_c (μ_c - μ'_c)² + 1/N_l Σ_c (σ_c - σ'_c)²,

  the mean squared error of the channel means plus that of the channel
  standard deviations: Huang & Belongie 2017's style loss (their eq. 13 as
  naoto0804/pytorch-AdaIN computes it, with MSE), whose weights
  (content 1, style 10, content MSE at relu4_1) then carry over. Layer
  weights default to 1 (the sum over relu1_1 .. relu4_1).
"""

import dataclasses
import math
from typing import Optional
from typing import Sequence
from typing import Union

import keras
import tensorflow as tf

from nst_tf import features
from nst_tf import ops
from nst_tf.config import check_fields
from nst_tf.config import option
from nst_tf.errors import NSTError

UNITS = ("gatys", "johnson", "huang")
REDUCTIONS = ("sum", "mean")

# The loss terms, under these names in API dicts, progress bars and TensorBoard.
# Per-layer terms (unweighted) are named "content/<layer>" and "style/<layer>".
TERMS = ("total", "content", "style", "tv", "laplacian", "pixel")
# The terms progress bars and result lines show (see summary()).
SUMMARY_TERMS = ("total", "content", "style")

# Johnson et al.'s layers on VGG: relu2_2 for content, relu1_2, relu2_2, relu3_3, relu4_3 for style.
JOHNSON_CONTENT_LAYERS = ("block2_conv2",)
JOHNSON_STYLE_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")
# Huang & Belongie's (AdaIN) layers on VGG: relu4_1 for content (the encoder's output), relu1_1 .. relu4_1 for style.
HUANG_CONTENT_LAYERS = ("block4_conv1",)
HUANG_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")


def summary(terms):
    """The :data:`SUMMARY_TERMS` of a dict of loss terms: what progress bars show."""
    return {name: value for name, value in terms.items() if name in SUMMARY_TERMS}


def check_finite(values, step):
    """Raise NSTError naming ``step`` if a value of ``values`` (name -> float) is NaN or infinite.

    The methods call it on the losses they already read back at every step: a loss that
    overflowed float32 (weights near 1e38) or diverged would otherwise run on to a grey or
    unchanged picture, or to a checkpoint of NaN weights, and exit 0.
    """
    for name, value in values.items():
        if not math.isfinite(value):
            raise NSTError(
                f"the loss became {value} at step {step} ({name}); lower the loss weights or the learning rate"
            )


def _as_float32(x):
    return tf.cast(x, tf.float32)


# --- formulas ----------------------------------------------------------------


def gram_matrix(features):
    """Per-position Gram matrix of feature maps: Gatys et al. eq. (3) divided by ``M_l``.

        Ĝ^l_ij = 1/M_l Σ_k F^l_ik F^l_jk,   M_l = H W

    It does not depend on the image size, so a style image of any size gives
    the target of an output of any other. Johnson et al.'s Gram (their eq. 3,
    normalised by ``C H W``) is ``Ĝ / C``.

    Args:
      features: ``[B, H, W, C]`` feature maps.

    Returns:
      ``[B, C, C]`` float32 Gram matrices.
    """
    x = _as_float32(features)
    shape = tf.shape(x)
    positions = shape[1] * shape[2]
    if x.shape[0] == 1:
        # A 2-D product: oneDNN's batched matmul first copies the transposed operand, the
        # 2-D one does not (about a third faster). For larger batches, splitting into 2-D
        # products costs as much again in the gradient's stacking copy.
        gram = _flat_gram(tf.reshape(x, [-1, shape[3]]))[tf.newaxis]
    else:
        gram = _flat_gram(tf.reshape(x, [shape[0], positions, shape[3]]))
    return gram / tf.cast(positions, tf.float32)


@tf.custom_gradient
def _flat_gram(flat):
    """``G = F^T F`` for ``F`` [M, C] or [B, M, C], with the one-matmul gradient ``dF = F (dG + dG^T)``.

    Autodiff of ``matmul(F, F, transpose_a=True)`` treats the two operands as different
    tensors and spends two ``M x C x C`` products on the gradient; this spends one.
    """

    def gradient(upstream):
        return tf.matmul(flat, upstream + tf.linalg.matrix_transpose(upstream))

    return tf.matmul(flat, flat, transpose_a=True), gradient


def mean_std(features):
    """The channel means and standard deviations of feature maps, stacked: ``[B, 2, C]`` float32.

        μ_c = 1/M_l Σ_k F^l_ck,   σ_c = sqrt(1/M_l Σ_k (F^l_ck - μ_c)² + ε)

    (:func:`nst_tf.ops.channel_mean_std`, ``ε = 1e-5``): the statistics AdaIN transfers, which
    Huang & Belongie's style loss matches instead of Grams. Like the per-position Gram it does
    not depend on the number of positions.
    """
    mean, std = ops.channel_mean_std(features)
    return tf.stack([mean, std], axis=1)


# The statistics a style loss can match, by name: ``features [B, H, W, C] -> [B, ...]``.
STATISTICS = {"gram": gram_matrix, "mean_std": mean_std}


def content_loss(features, target, reduction="sum"):
    """Feature reconstruction loss at one layer.

    ``reduction="sum"`` is Gatys et al. eq. (1):

        L_content = 1/2 Σ_ij (F^l_ij - P^l_ij)^2

    ``reduction="mean"`` is the mean-normalised variant of Johnson et al.
    2016 eq. (2), ``||phi(y) - phi(y_c)||^2 / (C H W)``, whose scale does not
    depend on the image size or the layer width.
    """
    diff = tf.square(_as_float32(features) - _as_float32(target))
    if reduction == "sum":
        per_image = 0.5 * tf.reduce_sum(diff, axis=[1, 2, 3])
    elif reduction == "mean":
        per_image = tf.reduce_mean(diff, axis=[1, 2, 3])
    else:
        raise ValueError(f"reduction must be 'sum' or 'mean', not {reduction!r}")
    return tf.reduce_mean(per_image)


def style_layer_scale(units, channels):
    """``s_l`` of :func:`style_layer_loss` for a layer of ``channels`` maps (see the module docstring).

    ``"gatys"``: ``1 / (4 N_l²)``; ``"johnson"``: ``1 / N_l⁴``; ``"huang"``: ``1 / N_l``.
    """
    channels = float(channels)
    if units == "gatys":
        return 1.0 / (4.0 * channels**2)
    if units == "johnson":
        return 1.0 / channels**4
    if units == "huang":
        return 1.0 / channels
    raise ValueError(f"units must be one of {', '.join(UNITS)}, not {units!r}")


def style_layer_loss(features, target, scale, statistic="gram"):
    """One layer's style loss, Gatys et al. eq. (4) with per-position Grams.

        E_l = s_l Σ_ij (Ĝ^l_ij - Â^l_ij)²

    or the same squared distance between any other :data:`STATISTICS` of the features.

    Args:
      features: ``[B, H, W, C]`` feature maps of the generated images.
      target: the style's statistic ``Â^l``, ``[1 or B, C, C]`` for ``"gram"``, ``[1 or B, 2, C]``
        for ``"mean_std"``.
      scale: ``s_l`` (:func:`style_layer_scale`).
      statistic: the name of the matched statistic in :data:`STATISTICS`.
    """
    diff = tf.square(STATISTICS[statistic](features) - _as_float32(target))
    per_image = tf.reduce_sum(diff, axis=list(range(1, diff.shape.rank)))
    return scale * tf.reduce_mean(per_image)


def total_variation_loss(images, reduction="sum"):
    """Squared total variation, the smoothness prior of Mahendran & Vedaldi 2015 (beta = 2).

        L_tv = Σ_ij (x_{i+1,j} - x_ij)^2 + (x_{i,j+1} - x_ij)^2

    ``reduction="mean"`` divides by the number of pixel values, which makes the
    weight independent of the image size.
    """
    x = _as_float32(images)
    # The differences as depthwise [-1, 1] convolutions: same values as shifted slices,
    # and a gradient 4x faster than the slices' (which each build a zero-filled tensor).
    step = tf.constant([-1.0, 1.0])[:, tf.newaxis, tf.newaxis]
    channels = tf.ones([1, x.shape[-1], 1])
    dy = tf.square(tf.nn.depthwise_conv2d(x, step[:, tf.newaxis] * channels, [1, 1, 1, 1], "VALID"))
    dx = tf.square(tf.nn.depthwise_conv2d(x, step[tf.newaxis] * channels, [1, 1, 1, 1], "VALID"))
    if reduction == "sum":
        per_image = tf.reduce_sum(dy, axis=[1, 2, 3]) + tf.reduce_sum(dx, axis=[1, 2, 3])
    elif reduction == "mean":
        per_image = tf.reduce_mean(dy, axis=[1, 2, 3]) + tf.reduce_mean(dx, axis=[1, 2, 3])
    else:
        raise ValueError(f"reduction must be 'sum' or 'mean', not {reduction!r}")
    return tf.reduce_mean(per_image)


_LAPLACIAN_KERNEL = ((0.0, -1.0, 0.0), (-1.0, 4.0, -1.0), (0.0, -1.0, 0.0))


def laplacian(images, pool_size=4):
    """``D(x)``: the 3x3 Laplacian of ``images`` after ``pool_size`` average pooling, per channel."""
    x = _as_float32(images)
    if pool_size > 1:
        x = tf.nn.avg_pool2d(x, pool_size, pool_size, padding="VALID")
    channels = x.shape[-1]
    kernel = tf.tile(tf.constant(_LAPLACIAN_KERNEL)[:, :, None, None], [1, 1, channels, 1])
    return tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding="VALID")


def laplacian_loss(images, content_images, pool_size=4):
    """Laplacian loss of Li et al. 2017, "Laplacian-Steered Neural Style Transfer", eq. (2).

        L_lap = Σ_ij (D(x_c) - D(x))^2_ij

    where ``D`` is the Laplacian of the ``pool_size``-average-pooled image. It
    keeps the content's fine structure (edges) that deep features lose.
    """
    diff = tf.square(laplacian(content_images, pool_size) - laplacian(images, pool_size))
    return tf.reduce_mean(tf.reduce_sum(diff, axis=[1, 2, 3]))


def pixel_loss(images, content_images):
    """Per-pixel mean squared error to the content images, ``||x - x_c||² / (C H W)``."""
    return tf.reduce_mean(tf.square(_as_float32(images) - _as_float32(content_images)))


# --- loss objects over layers ---------------------------------------------------


def _layer_weights(layers, weights, default):
    if weights is None:
        return {name: default for name in layers}
    if len(weights) != len(layers):
        raise ValueError(f"{len(weights)} layer weights for {len(layers)} layers")
    return {name: float(w) for name, w in zip(layers, weights)}


def _weighted_sum(per_layer, weights):
    return tf.add_n([weights[name] * value for name, value in per_layer.items()])


class ContentLoss:
    """Feature reconstruction over several layers: ``Σ_l w_l L_content(F^l, P^l)``.

    Args:
      layers: layer names, keys of the feature dicts it is called with.
      layer_weights: ``w_l`` per layer (default 1 each).
      reduction: ``"sum"`` (Gatys et al.'s ½ Σ) or ``"mean"`` (Johnson et al.'s), see
        :func:`content_loss`.
    """

    def __init__(self, layers, layer_weights=None, reduction="sum"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")
        self.layers = tuple(layers)
        self.layer_weights = _layer_weights(self.layers, layer_weights, 1.0)
        self.reduction = reduction

    def __call__(self, features, targets):
        """``(loss, {layer: unweighted loss})`` of feature dicts ``features`` against ``targets``."""
        per_layer = {name: content_loss(features[name], targets[name], self.reduction) for name in self.layers}
        return _weighted_sum(per_layer, self.layer_weights), per_layer


class StyleLoss:
    """Style reconstruction over several layers, Gatys et al. eq. (5): ``Σ_l w_l E_l``.

    ``E_l`` is :func:`style_layer_loss` with the scale of ``units`` (see the
    module docstring), on the statistic named ``statistic``: ``"gram"``, the
    per-position Gram matrix, or ``"mean_std"``, the channel means and
    standard deviations (Huang & Belongie's, with ``units="huang"``).

    Args:
      layers: layer names, keys of the feature dicts it is called with.
      layer_weights: ``w_l`` per layer; default ``1/L`` in Gatys units, 1 in the others.
      units: ``"gatys"``, ``"johnson"`` or ``"huang"``.
      statistic: a key of :data:`STATISTICS`.
    """

    def __init__(self, layers, layer_weights=None, units="gatys", statistic="gram"):
        if units not in UNITS:
            raise ValueError(f"units must be one of {', '.join(UNITS)}, not {units!r}")
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, not {statistic!r}")
        self.layers = tuple(layers)
        default = 1.0 / len(self.layers) if units == "gatys" else 1.0
        self.layer_weights = _layer_weights(self.layers, layer_weights, default)
        self.units = units
        self.statistic = statistic

    def statistics(self, features):
        """``{layer: statistic}`` of a feature dict: ``[B, C, C]`` per-position Grams, ``[B, 2, C]`` means and stds."""
        return {name: STATISTICS[self.statistic](features[name]) for name in self.layers}

    def target(self, style_features, blend_weights=None):
        """The targets of several style images, from one feature dict per image (any sizes).

        ``blend_weights=None`` stacks them, ``[S, ...]`` per layer (``[S, C, C]`` Grams): each image of a
        batch then picks its own with ``style_index`` (Dumoulin et al.'s multi-style
        training). A list of ``S`` weights ``v_s`` blends them into one target,
        ``[1, C, C]`` per layer (Gatys et al., several styles):

            Â^l = Σ_s v_s Â^l_s / Σ_s v_s
        """
        stats = [self.statistics(f) for f in style_features]
        if blend_weights is None:
            return {name: tf.concat([s[name] for s in stats], axis=0) for name in self.layers}
        if len(blend_weights) != len(stats):
            raise ValueError(f"{len(stats)} styles but {len(blend_weights)} blend weights")
        total = float(sum(blend_weights))
        if total <= 0:
            raise ValueError("blend weights must sum to a positive number")
        return {
            name: tf.add_n([float(w) / total * s[name] for w, s in zip(blend_weights, stats)]) for name in self.layers
        }

    def __call__(self, features, targets, style_index=None):
        """``(loss, {layer: unweighted E_l})`` of a feature dict against :meth:`target` ``targets``.

        ``style_index`` (``[B]`` ints) picks each image's style from stacked targets;
        without it the targets broadcast over the batch.
        """
        per_layer = {}
        for name in self.layers:
            target = targets[name] if style_index is None else tf.gather(targets[name], style_index)
            scale = style_layer_scale(self.units, features[name].shape[-1])
            per_layer[name] = style_layer_loss(features[name], target, scale, self.statistic)
        return _weighted_sum(per_layer, self.layer_weights), per_layer


# --- the configured loss of every method -------------------------------------------


def _fail(field, reason):
    raise NSTError(f"--{field}: {reason}")


def default_layers(feature_extractor, units="gatys"):
    """``(content_layers, style_layers)`` a :class:`LossConfig` uses when it names none.

    Johnson's layers on VGG networks in Johnson units, Huang & Belongie's in
    Huang units, the extractor's paper setting
    (:func:`nst_tf.features.default_layers`) otherwise.
    """
    if units == "johnson" and feature_extractor.startswith("vgg"):
        return list(JOHNSON_CONTENT_LAYERS), list(JOHNSON_STYLE_LAYERS)
    if units == "huang" and feature_extractor.startswith("vgg"):
        return list(HUANG_CONTENT_LAYERS), list(HUANG_STYLE_LAYERS)
    return features.default_layers(feature_extractor)


@dataclasses.dataclass
class LossConfig:
    """The feature network, its layers and the weights of the loss terms: one for every method.

    The defaults are Gatys et al.'s (VGG19, content ``block4_conv2``, style
    ``block1_conv1`` .. ``block5_conv1``, α/β = 1e-3, Gatys units);
    :meth:`johnson` gives Johnson et al.'s and :meth:`huang` Huang & Belongie's (AdaIN). Fields that name layers accept
    Keras layer names (``"block4_conv2"``) or conv indices (``7``, counting
    conv layers from 0). Each field is the flag of the same name.
    """

    feature_extractor: str = option("vgg19", "Feature (loss) network, frozen.", choices=features.EXTRACTORS)
    weights: Optional[str] = option(
        "imagenet",
        "Feature network weights: imagenet (Keras cache), a Keras no-top .weights.h5 "
        "file, or none (random, for tests).",
    )
    pooling: str = option("max", "VGG pooling: max, or avg as Gatys et al. suggest.", choices=features.POOLINGS)
    content_layers: Optional[Sequence[Union[str, int]]] = option(
        None,
        "Content layers by name or conv index (default: block4_conv2; block2_conv2 = relu2_2 "
        "on VGG with --units=johnson, block4_conv1 = relu4_1 with --units=huang).",
    )
    style_layers: Optional[Sequence[Union[str, int]]] = option(
        None,
        "Style layers by name or conv index (default: block1_conv1..block5_conv1; relu1_2, "
        "relu2_2, relu3_3, relu4_3 on VGG with --units=johnson; relu1_1..relu4_1 with --units=huang).",
    )
    style_layer_weights: Optional[Sequence[float]] = option(
        None, "Weight w_l of each style layer (default: 1/L with --units=gatys, 1 with johnson or huang)."
    )
    content_weight: float = option(1.0, "Content loss weight (alpha).")
    style_weight: float = option(1e3, "Style loss weight (beta).")
    tv_weight: float = option(0.0, "Total-variation loss weight (on 0-255 pixels with --units=johnson, else 0-1).")
    laplacian_weight: float = option(0.0, "Laplacian loss weight (Li et al. 2017).")
    pixel_weight: float = option(0.0, "Weight of a per-pixel mean squared error to the content image.")
    content_loss: str = option(
        "sum",
        "Content loss reduction: sum (Gatys et al.'s 1/2 sum of squares) or mean (Johnson et al.'s, over C*H*W).",
        choices=REDUCTIONS,
    )
    units: str = option(
        "gatys",
        "Style loss scale per layer: gatys (1/(4 N^2), the paper's alpha/beta), johnson "
        "(1/N^4, his published weights; TV on 0-255 pixels) or huang (1/N: with "
        "--style_statistic=mean_std, AdaIN's mean squared errors).",
        choices=UNITS,
    )
    style_statistic: str = option(
        "gram",
        "What the style loss matches per layer: gram (per-position Gram matrices) or mean_std "
        "(channel means and standard deviations, AdaIN's style loss).",
        choices=tuple(STATISTICS),
    )

    def __post_init__(self):
        for name in ("content_layers", "style_layers", "style_layer_weights"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(value))
        check_fields(self)
        for name in ("content_weight", "style_weight", "tv_weight", "laplacian_weight", "pixel_weight"):
            if not getattr(self, name) >= 0:
                _fail(name, f"must be >= 0, got {getattr(self, name)}")
        if self.content_weight == 0 and self.style_weight == 0:
            _fail("style_weight", "content_weight and style_weight cannot both be 0")
        weights = self.style_layer_weights
        if weights is not None and (not weights or any(not w >= 0 for w in weights) or sum(weights) <= 0):
            _fail("style_layer_weights", f"must be non-negative with a positive sum, got {list(weights)}")
        self.layers()

    @classmethod
    def johnson(cls, **overrides):
        """Johnson et al. 2016's loss: VGG16, content relu2_2 (mean), style relu1_2 .. relu4_3,
        content 1, style 5, TV 1e-6, Johnson units; ``overrides`` set other fields."""
        settings = dict(
            feature_extractor="vgg16", style_weight=5.0, tv_weight=1e-6, content_loss="mean", units="johnson"
        )
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def huang(cls, **overrides):
        """Huang & Belongie 2017's (AdaIN) loss: VGG19, content MSE at relu4_1, style MSE of the
        channel means and stds at relu1_1 .. relu4_1, content 1, style 10; ``overrides`` set other fields."""
        settings = dict(
            feature_extractor="vgg19", style_weight=10.0, content_loss="mean", units="huang", style_statistic="mean_std"
        )
        settings.update(overrides)
        return cls(**settings)

    def layers(self):
        """``(content_layers, style_layers)`` as Keras layer names; NSTError naming the flag."""
        default_content, default_style = default_layers(self.feature_extractor, self.units)
        content = self._resolve("content_layers", self.content_layers or default_content)
        style = self._resolve("style_layers", self.style_layers or default_style)
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(style):
            _fail("style_layer_weights", f"has {len(self.style_layer_weights)} values for {len(style)} style layers")
        return content, style

    def _resolve(self, field, layers):
        try:
            return features.resolve_layers(self.feature_extractor, layers)
        except NSTError as exc:
            _fail(field, str(exc))


def build_extractor(config, precision="float32"):
    """The frozen feature network of a :class:`LossConfig`, with its layers, computing in ``precision``."""
    content, style = config.layers()
    return features.build_feature_extractor(
        config.feature_extractor,
        layers=list(dict.fromkeys(content + style)),
        weights=config.weights,
        pooling=config.pooling,
        precision=precision,
    )


@dataclasses.dataclass(frozen=True)
class ContentTarget:
    """What the content terms compare against: the content images and their content-layer features."""

    images: tf.Tensor  # [B, H, W, 3] in [0, 1]
    features: dict  # content layer -> [B, H', W', C]


def _batched(images):
    images = tf.convert_to_tensor(images, tf.float32)
    return images[tf.newaxis] if images.shape.rank == 3 else images


class PerceptualLoss:
    """The loss every method minimises, on one frozen feature network:

        L(x) = α Σ_l L_content + β Σ_l w_l E_l + λ_tv TV(x) + λ_lap L_lap(x_c, x) + λ_pix ||x - x_c||²/(C H W)

    (:class:`ContentLoss`, :class:`StyleLoss`, :func:`total_variation_loss`,
    :func:`laplacian_loss`, :func:`pixel_loss`), with the weights, layers and
    units of a :class:`LossConfig`. It holds no targets: :meth:`content_target`
    and :meth:`style_target` compute them, once for Gatys' fixed images, per
    batch for a trainer's photos.

    Args:
      config: a :class:`LossConfig`.
      extractor: a feature network (:func:`nst_tf.features.build_feature_extractor`)
        whose outputs include the config's layers, to share between losses; built
        from ``config`` when None.
      precision: compute precision of the network built when ``extractor`` is None.
    """

    def __init__(self, config, extractor=None, precision="float32"):
        self.config = config
        self.content_layers, self.style_layers = config.layers()
        if extractor is None:
            extractor = build_extractor(config, precision)
        missing = [n for n in self.content_layers + self.style_layers if n not in extractor.output]
        if missing:
            raise NSTError(f"the feature extractor has no output {missing[0]!r} (it has {', '.join(extractor.output)})")
        self.extractor = extractor
        # The content images only need the (shallower) content layers: a sub-model
        # sharing the extractor's layers skips the deeper ones.
        self.content_extractor = keras.Model(
            extractor.input, {name: extractor.output[name] for name in self.content_layers}
        )
        self.content_loss = ContentLoss(self.content_layers, reduction=config.content_loss)
        self.style_loss = StyleLoss(
            self.style_layers, config.style_layer_weights, units=config.units, statistic=config.style_statistic
        )

    def content_target(self, images):
        """The :class:`ContentTarget` of content ``images`` ([B, H, W, 3] or [H, W, 3] in [0, 1])."""
        images = _batched(images)
        # convert_to_tensor: the Gatys export computes targets inside a tf.function too.
        return ContentTarget(
            images, {name: tf.convert_to_tensor(value) for name, value in self.content_extractor(images).items()}
        )

    def style_target(self, style_images, blend_weights=None):
        """The style targets of a list of images ([H, W, 3] in [0, 1], any sizes).

        Stacked, one per style (``[S, C, C]`` per layer), or blended into one by
        ``blend_weights``: see :meth:`StyleLoss.target`.
        """
        return self.style_loss.target([self.extractor(_batched(s)) for s in style_images], blend_weights)

    def __call__(self, images, content, style, style_index=None, style_weight_scale=1.0):
        """``(total, terms)`` of ``images`` ([B, H, W, 3] in [0, 1]).

        Args:
          images: the generated images.
          content: their :class:`ContentTarget` (one image, or one per image).
          style: targets from :meth:`style_target`.
          style_index: ``[B]`` ints picking each image's style from stacked targets.
          style_weight_scale: a factor on β (the trainers' staged schedule).

        Returns:
          ``total`` and a dict of the unweighted terms: ``content``, ``style``,
          ``tv``, ``laplacian`` and ``pixel`` (these two only when weighted), and the
          per-layer ``content/<layer>`` and ``style/<layer>``.
        """
        cfg = self.config
        feats = self.extractor(images)
        content_value, content_layers = self.content_loss(feats, content.features)
        style_value, style_layers = self.style_loss(feats, style, style_index)
        pixels = _as_float32(images)
        tv = total_variation_loss(pixels * 255.0 if cfg.units == "johnson" else pixels)
        terms = {"content": content_value, "style": style_value, "tv": tv}
        total = cfg.content_weight * content_value + cfg.style_weight * style_weight_scale * style_value
        # Optional terms only when weighted: a zero-weighted term would still cost its gradient.
        if cfg.tv_weight:
            total += cfg.tv_weight * tv
        if cfg.laplacian_weight:
            terms["laplacian"] = laplacian_loss(pixels, content.images)
            total += cfg.laplacian_weight * terms["laplacian"]
        if cfg.pixel_weight:
            terms["pixel"] = pixel_loss(pixels, content.images)
            total += cfg.pixel_weight * terms["pixel"]
        terms.update({f"content/{name}": value for name, value in content_layers.items()})
        terms.update({f"style/{name}": value for name, value in style_layers.items()})
        return total, terms


# --- GAN losses (CycleGAN, Zhu et al. 2017) -----------------------------------
# Discriminator outputs are raw logits/scores (no sigmoid) in every function.


def lsgan_generator_loss(fake_scores):
    """Least-squares generator loss (Mao et al. 2017), CycleGAN's default.

    L_G = E_x[(D(G(x)) - 1)^2]
    """
    return tf.reduce_mean(tf.square(fake_scores - 1.0))


def lsgan_discriminator_loss(real_scores, fake_scores):
    """Least-squares discriminator loss, halved as in the CycleGAN authors' code
    so D learns more slowly than G.

    L_D = 1/2 (E_y[(D(y) - 1)^2] + E_x[D(G(x))^2])
    """
    return 0.5 * (tf.reduce_mean(tf.square(real_scores - 1.0)) + tf.reduce_mean(tf.square(fake_scores)))


def bce_generator_loss(fake_logits):
    """Non-saturating log-likelihood generator loss (Goodfellow et al. 2014).

    L_G = -E_x[log sigmoid(D(G(x)))]
    """
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake_logits), fake_logits))


def bce_discriminator_loss(real_logits, fake_logits):
    """Log-likelihood discriminator loss, halved like the LSGAN one.

    L_D = -1/2 (E_y[log sigmoid(D(y))] + E_x[log(1 - sigmoid(D(G(x))))])
    """
    real = tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits)
    return 0.5 * (tf.reduce_mean(real) + tf.reduce_mean(fake))


# name -> (generator loss, discriminator loss), for the --gan_loss flag.
GAN_LOSSES = {
    "lsgan": (lsgan_generator_loss, lsgan_discriminator_loss),
    "bce": (bce_generator_loss, bce_discriminator_loss),
}


def cycle_consistency_loss(real, reconstructed):
    """Cycle-consistency L1 loss for one direction (Zhu et al. eq. 2).

    L_cyc = E_x[||F(G(x)) - x||_1], the mean absolute error per pixel and channel.
    """
    return tf.reduce_mean(tf.abs(reconstructed - real))


def identity_loss(real, mapped):
    """Identity-mapping L1 loss (Zhu et al. sec. 5.2, after Taigman et al. 2017).

    L_idt = E_y[||G(y) - y||_1]: a generator fed an image already in its target
    domain should return it unchanged, which preserves colour composition.
    """
    return tf.reduce_mean(tf.abs(mapped - real))
