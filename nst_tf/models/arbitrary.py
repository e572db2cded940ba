"""Arbitrary style transfer in one forward pass: AdaIN (Huang & Belongie 2017, "Arbitrary Style
Transfer in Real-time with Adaptive Instance Normalization").

    t = AdaIN(f(c), f(s)) = σ(f(s)) (f(c) - μ(f(c))) / σ(f(c)) + μ(f(s)),    T(c, s) = g(t)

``f`` is a frozen VGG of :mod:`nst_tf.features` up to relu4_1 (``block4_conv1``), ``g`` a
:class:`Decoder` that mirrors it, and :func:`nst_tf.ops.adain` the only link between the
two: the style enters through its channel means and standard deviations at the encoder's
last layer, a :class:`StyleVector` (1024 numbers for VGG). A vector is computed once per
painting, saved (:meth:`StyleVector.save`), averaged (:meth:`StyleVector.blend`) and
reused, so a server does not re-encode a painting on every request.

Images are RGB in [0, 1], NHWC, as for the other nets; any H, W from
:attr:`ArbitraryStyleNet.min_side` up (sizes that are not a multiple of the decoder's
upsampling are reflection-padded at the bottom and right and cropped back, the rule of
:func:`nst_tf.models.transform_net.pad_to_multiple`). Every method is a pure function of
tensors, usable in a ``tf.function`` with dynamic sizes.
"""

import hashlib
import io
import os
import zipfile
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from nst_tf import features
from nst_tf import fileio
from nst_tf import layers
from nst_tf import ops
from nst_tf import precision
from nst_tf.errors import NSTError
from nst_tf.models.transform_net import crop_to
from nst_tf.models.transform_net import pad_to_multiple
from nst_tf.models.transform_net import scaled_channels

# AdaIN's ε, in the content's and the style's standard deviations alike.
EPSILON = 1e-5
# Relu4_1: Huang & Belongie's encoder output.
DEFAULT_LAYER = "block4_conv1"


class StyleVector(NamedTuple):
    """The statistics of ``S`` styles at the encoder's last layer: ``mean`` and ``std``, ``[S, C]`` float32.

    A NamedTuple of tensors, so ``tf.function`` and ``tf.nest`` take it as a structure. Its
    packed form, :meth:`to_tensor`, is one ``[S, 2C]`` tensor (means, then stds) for
    signatures and files.
    """

    mean: tf.Tensor
    std: tf.Tensor

    @classmethod
    def of_features(cls, encoded):
        """The vector of encoder features ``[S, h, w, C]`` (:meth:`ArbitraryStyleNet.encode`)."""
        return cls(*ops.channel_mean_std(encoded, EPSILON))

    @classmethod
    def from_tensor(cls, packed):
        """The vector of a packed ``[S, 2C]`` (or ``[2C]``) tensor, the inverse of :meth:`to_tensor`."""
        packed = tf.convert_to_tensor(packed, tf.float32)
        if packed.shape.rank == 1:
            packed = packed[tf.newaxis]
        mean, std = tf.split(packed, 2, axis=-1)
        return cls(mean, std)

    def to_tensor(self):
        """``[S, 2C]``: the means, then the standard deviations."""
        return tf.concat([self.mean, self.std], axis=-1)

    @classmethod
    def concat(cls, vectors):
        """One vector holding the styles of several, in order."""
        return cls(tf.concat([v.mean for v in vectors], 0), tf.concat([v.std for v in vectors], 0))

    def blend(self, weights):
        """The ``[1, C]`` mix of the ``S`` styles with weights ``w`` (normalised to sum to 1):

            μ = Σ_s w_s μ_s,   σ = Σ_s w_s σ_s

        AdaIN is affine in ``(μ(s), σ(s))``, so with weights summing to 1 this is exactly
        the interpolation of AdaIN's Torch code, ``Σ_s w_s AdaIN(f(c), f(s_s))``.
        """
        weights = tf.convert_to_tensor(weights, tf.float32)
        weights = (weights / tf.reduce_sum(weights))[tf.newaxis]
        return StyleVector(tf.matmul(weights, self.mean), tf.matmul(weights, self.std))

    def save(self, path, encoder):
        """Write the vector to ``path`` (``.npz``, atomically), tagged with the ``encoder``
        (:attr:`ArbitraryStyleNet.encoder_id`) whose statistics these are."""
        buffer = io.BytesIO()
        np.savez(buffer, mean=np.asarray(self.mean), std=np.asarray(self.std), encoder=np.array(encoder))
        fileio.atomic_write_bytes(os.fspath(path), buffer.getvalue())

    @classmethod
    def load(cls, path, encoder=None):
        """The vector saved at ``path``; with ``encoder``, NSTError unless it was made by that encoder."""
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                mean, std, saved_by = data["mean"], data["std"], str(data["encoder"])
        except FileNotFoundError:
            raise NSTError(f"{path}: no such file") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise NSTError(f"{path}: not a style vector file ({type(exc).__name__})") from None
        if mean.ndim != 2 or mean.shape != std.shape:
            raise NSTError(f"{path}: not a style vector file (shapes {mean.shape} and {std.shape})")
        if encoder is not None and saved_by != encoder:
            raise NSTError(f"{path}: a style vector of another encoder ({saved_by}; this model's is {encoder})")
        return cls(tf.constant(mean, tf.float32), tf.constant(std, tf.float32))


def encoder_spec(feature_extractor):
    """The :class:`nst_tf.features.ExtractorSpec` of an encoder AdaIN can use; NSTError for others."""
    spec = features.get_spec(feature_extractor)
    if not spec.sequential:
        raise NSTError(
            f"--feature_extractor: arbitrary style needs a VGG encoder (the decoder mirrors its conv stack), "
            f"not {feature_extractor}"
        )
    return spec


def mirror_stages(encoder, layer):
    """``(stages, input_channels)`` of the decoder that mirrors ``encoder`` up to ``layer``.

    Walking the encoder back from ``layer``, each convolution ``C_in -> C_out`` becomes one
    ``C_out -> C_in`` and each pooling a 2x nearest upsampling, which starts a new stage. For
    VGG19 up to relu4_1 this is Huang & Belongie's decoder,
    ``[[256], [256, 256, 256, 128], [128, 64], [64, 3]]`` from 512 channels.
    """
    plan = []
    for item in encoder.layers:
        if isinstance(item, keras.layers.Conv2D):
            plan.append((int(item.kernel.shape[2]), int(item.kernel.shape[3])))
        elif isinstance(item, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            plan.append(None)
        if item.name == layer:
            break
    stages = [[]]
    for step in reversed(plan):
        if step is None:
            stages.append([])
        else:
            stages[-1].append(step[0])
    return [stage for stage in stages if stage], plan[-1][1]


@keras.saving.register_keras_serializable(package="nst_tf")
class Decoder(keras.Model):
    """AdaIN's decoder: reflection-padded 3x3 convolutions with ReLU, a 2x nearest upsampling
    before each stage but the first, no normalisation, and a linear RGB output.

    Args:
      stages: output channels of each convolution, one list per resolution (the last ends
        with 3); see :func:`mirror_stages`.
      input_channels: channels of the features it decodes.

    Each upsampling and the convolution after it are one :class:`nst_tf.layers.ReflectConv2D`
    (``upsample=2``), which computes them as a sub-pixel convolution. Weights are created in
    ``__init__``, so a fresh decoder can be restored from a checkpoint before any call.
    """

    def __init__(self, stages, input_channels, **kwargs):
        super().__init__(**kwargs)
        self.stages = tuple(tuple(int(f) for f in stage) for stage in stages)
        self.input_channels = int(input_channels)
        if not self.stages or self.stages[-1][-1] != 3:
            raise ValueError(f"the last stage must end with 3 (RGB) channels, got {self.stages}")
        names = []
        channels = self.input_channels
        for i, stage in enumerate(self.stages):
            for j, filters in enumerate(stage):
                name = f"conv{i + 1}_{j + 1}"
                conv = layers.ReflectConv2D(filters, 3, upsample=2 if i and not j else 1, name=name)
                conv.build((None, None, None, channels))
                # Attributes, not a list: tf.train.Checkpoint does not follow Keras' tracked lists.
                setattr(self, name, conv)
                names.append(name)
                channels = filters
        self._conv_names = tuple(names)
        self.built = True

    def build(self, input_shape=None):
        # Weights already exist; accept Keras' build_from_config on load.
        self.built = True

    @property
    def size_multiple(self):
        """The decoder upsamples by this: features of ``H/m x W/m`` give an ``H x W`` image."""
        return 2 ** (len(self.stages) - 1)

    def call(self, features):
        x = features
        *body, last = self._conv_names
        for name in body:
            x = tf.nn.relu(getattr(self, name)(x))
        return tf.cast(getattr(self, last)(x), tf.float32)

    def get_config(self):
        return {
            **super().get_config(),
            "stages": [list(stage) for stage in self.stages],
            "input_channels": self.input_channels,
        }


def _scaled_stages(stages, width):
    """``stages`` with every hidden convolution's channels times ``width`` (the RGB output stays 3)."""
    scaled = [[scaled_channels(f, width) for f in stage] for stage in stages]
    scaled[-1][-1] = stages[-1][-1]
    return scaled


@keras.saving.register_keras_serializable(package="nst_tf")
class ArbitraryStyleNet(keras.Model):
    """AdaIN: a frozen VGG encoder up to ``layer`` and a trained :class:`Decoder` mirroring it.

    Args:
      feature_extractor: a VGG of :data:`nst_tf.features.EXTRACTORS` (the decoder mirrors its
        plain conv stack; ResNet50 has none).
      layer: the encoder's last layer, by name or conv index (default relu4_1, ``block4_conv1``).
      pooling: the encoder's pooling, ``max`` or ``avg``.
      width: multiplier of the decoder's hidden channels (1: the paper's decoder).
      weights: the encoder's weights, as :func:`nst_tf.features.build_feature_extractor` takes
        them. Not part of the config: a trained model's checkpoint holds the encoder's weights
        beside the decoder's, so :meth:`from_config` builds it empty for the restore.

    The encoder (:attr:`encoder`) returns every conv layer up to ``layer`` (computed on the way
    anyway), so a loss can read relu1_1 .. relu4_1 from the same pass. The model computes in the
    Keras policy it is built under (:func:`nst_tf.precision.policy_scope`), encoder included.
    """

    def __init__(
        self, feature_extractor="vgg19", layer=DEFAULT_LAYER, pooling="max", width=1.0, weights="imagenet", **kwargs
    ):
        super().__init__(**kwargs)
        spec = encoder_spec(feature_extractor)
        if not width > 0:
            raise NSTError(f"--width: must be > 0, not {width}")
        (self.layer,) = features.resolve_layers(feature_extractor, [layer])
        if self.layer not in spec.selectable_layers:
            raise NSTError(
                f"--content_layers: the encoder ends at a conv layer, and {self.layer!r} is none of {feature_extractor}'s"
            )
        self.feature_extractor = feature_extractor
        self.pooling = pooling
        self.width = float(width)
        depth = spec.selectable_layers.index(self.layer)
        self.encoder = features.build_feature_extractor(
            feature_extractor,
            layers=list(spec.selectable_layers[: depth + 1]),
            weights=weights,
            pooling=pooling,
            precision=precision.current(),
        )
        stages, channels = mirror_stages(self.encoder, self.layer)
        self.decoder = Decoder(_scaled_stages(stages, self.width), channels, name="decoder")
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    @classmethod
    def from_config(cls, config):
        # The encoder's weights come back from the checkpoint; do not fetch ImageNet's first.
        return cls(**{"weights": None, **config})

    @property
    def size_multiple(self):
        return self.decoder.size_multiple

    @property
    def min_side(self):
        """The smallest image side: the features must be at least 2 px for the decoder's reflection padding."""
        return 2 * self.size_multiple

    @property
    def encoder_id(self):
        """``extractor:layer:pooling:digest``, the digest a hash of the encoder's weights: the
        identity of the statistics it computes, which tags saved :class:`StyleVector` s."""
        digest = hashlib.sha256()
        for weight in self.encoder.weights:
            digest.update(np.asarray(weight.numpy(), np.float32).tobytes())
        return f"{self.feature_extractor}:{self.layer}:{self.pooling}:{digest.hexdigest()[:16]}"

    # -- the pipeline, step by step -------------------------------------------------
    def encode(self, images):
        """``f(images)``: the features at :attr:`layer`, ``[B, H/m, W/m, C]`` (m = :attr:`size_multiple`)."""
        return self.encoder(images)[self.layer]

    def style_vector(self, style_images):
        """The :class:`StyleVector` of a batch of style images (``[S, H, W, 3]`` in [0, 1], one size)."""
        return StyleVector.of_features(self.encode(style_images))

    def transfer(self, content_features, style, alpha=1.0, mask=None, background=None):
        """The decoder's input ``t' = α AdaIN(c, s) + (1 - α) c`` for content features ``c``.

        Args:
          content_features: ``[B, h, w, C]`` from :meth:`encode`.
          style: a :class:`StyleVector` of 1 style (for the whole batch) or ``B``.
          alpha: the content-style trade-off α in [0, 1] (a float or scalar tensor).
          mask: optional ``[1 or B, h, w, 1]`` 0/1 mask at the features' size: ``style`` where it
            is 1 and ``background`` (a :class:`StyleVector`) where it is 0, each AdaIN taking
            the content's statistics over its own region, as AdaIN's Torch code does.
        """
        c = tf.cast(content_features, tf.float32)
        if mask is None:
            t = ops.adain(c, style.mean, style.std, EPSILON)
        else:
            if background is None:
                raise ValueError("a mask needs a background style")
            mask = tf.cast(mask, tf.float32)
            t = mask * ops.adain(c, style.mean, style.std, EPSILON, mask=mask)
            t += (1.0 - mask) * ops.adain(c, background.mean, background.std, EPSILON, mask=1.0 - mask)
        alpha = tf.cast(alpha, tf.float32)
        return alpha * t + (1.0 - alpha) * c

    def decode(self, features):
        """``g(t)``: float32 RGB, unclipped (the training loss sees the raw output)."""
        return self.decoder(features)

    # -- the whole transfer -----------------------------------------------------------
    def stylize(self, content, style, alpha=1.0, mask=None, background=None):
        """Stylize RGB [0, 1] ``content`` ``[B, H, W, 3]`` with a :class:`StyleVector`; returns [0, 1].

        ``alpha``, ``mask`` and ``background`` are :meth:`transfer`'s, except that the mask is
        at the content's size: ``[1 or B, H, W, 1]`` in [0, 1], 1 for ``style`` (the foreground).
        Each feature position takes the majority of the pixels it covers.
        """
        padded, size = pad_to_multiple(content, self.size_multiple)
        if mask is not None:
            mask, _ = pad_to_multiple(tf.cast(mask, tf.float32), self.size_multiple)
            pooled = tf.nn.avg_pool2d(mask, self.size_multiple, self.size_multiple, "VALID")
            mask = tf.cast(pooled >= 0.5, tf.float32)
        t = self.transfer(self.encode(padded), style, alpha, mask, background)
        return tf.clip_by_value(crop_to(self.decode(t), size), 0.0, 1.0)

    def call(self, inputs):
        """``model((content, style_images))``: each content image in the style of the batch of style images
        (one style image, or one per content image)."""
        content, style_images = inputs
        return self.stylize(content, self.style_vector(style_images))

    def get_config(self):
        return {
            **super().get_config(),
            "feature_extractor": self.feature_extractor,
            "layer": self.layer,
            "pooling": self.pooling,
            "width": self.width,
        }
