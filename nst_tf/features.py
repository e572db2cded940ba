"""Frozen ImageNet feature extractors for perceptual and Gram losses.

A feature extractor is an ordinary functional ``keras.Model``: it takes RGB
images in [0, 1] (NHWC, any height and width), applies the backbone's own
preprocessing inside, and returns a dict ``{layer_name: feature_map}``. The
backbone is truncated after the deepest requested layer and frozen, so the
cost of a call is only what the losses need.

Layers are chosen by Keras layer name (``"block4_conv2"``) or by index in the
extractor's ordered list of selectable layers (for VGG, the conv layers:
0..15 for VGG19, as Gatys et al. and the "Artistic Style Transfer Paper Recreation" report count them).
"""

import dataclasses
import os
from typing import Callable
from typing import Sequence
from typing import Tuple

import keras
import tensorflow as tf

from nst_tf.errors import NSTError
from nst_tf.precision import policy_scope

# ImageNet channel means in BGR order, the "caffe" preprocessing shared by the
# Keras VGG16, VGG19 and ResNet50 weights.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


class WeightsUnavailable(NSTError):
    """The ImageNet weights are neither in the Keras cache nor downloadable (no internet).

    Its own type so that a caller with an offline alternative (the demo's HED fallback,
    :mod:`nst_tf.weights`) can tell it from a broken weights file.
    """


@keras.saving.register_keras_serializable(package="nst_tf")
class CaffePreprocess(keras.layers.Layer):
    """RGB in [0, 1] -> BGR in [0, 255] minus the ImageNet mean (Keras ``caffe`` mode)."""

    def call(self, images):
        bgr = tf.reverse(tf.cast(images, self.compute_dtype), axis=[-1]) * 255.0
        return bgr - tf.constant(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)


def _vgg_conv_layers(blocks):
    return tuple(f"block{b}_conv{c}" for b, convs in enumerate(blocks, start=1) for c in range(1, convs + 1))


@dataclasses.dataclass(frozen=True)
class ExtractorSpec:
    """How to build one backbone and which of its layers can be selected."""

    name: str
    application: Callable[..., keras.Model]
    selectable_layers: Tuple[str, ...]
    content_layers: Tuple[str, ...]
    style_layers: Tuple[str, ...]
    sequential: bool  # True: rebuilt layer by layer, which allows the pooling swap.


EXTRACTORS = {
    "vgg19": ExtractorSpec(
        name="vgg19",
        application=keras.applications.VGG19,
        selectable_layers=_vgg_conv_layers((2, 2, 4, 4, 4)),
        content_layers=("block4_conv2",),
        style_layers=tuple(f"block{b}_conv1" for b in range(1, 6)),
        sequential=True,
    ),
    "vgg16": ExtractorSpec(
        name="vgg16",
        application=keras.applications.VGG16,
        selectable_layers=_vgg_conv_layers((2, 2, 3, 3, 3)),
        content_layers=("block4_conv2",),
        style_layers=tuple(f"block{b}_conv1" for b in range(1, 6)),
        sequential=True,
    ),
    # ResNet50 has no plain conv stack to index, so the selectable layers are
    # the outputs of its stem and of each stage (strides 2, 4, 8, 16, 32).
    "resnet50": ExtractorSpec(
        name="resnet50",
        application=keras.applications.ResNet50,
        selectable_layers=(
            "conv1_relu",
            "conv2_block3_out",
            "conv3_block4_out",
            "conv4_block6_out",
            "conv5_block3_out",
        ),
        content_layers=("conv3_block4_out",),
        style_layers=("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"),
        sequential=False,
    ),
}

MIN_IMAGE_SIDE = 32
POOLINGS = ("max", "avg")


def get_spec(name):
    """The :class:`ExtractorSpec` registered as ``name``."""
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise NSTError(
            f"--feature_extractor: unknown extractor {name!r} (choose from {', '.join(EXTRACTORS)})"
        ) from None


def default_layers(name="vgg19"):
    """``(content_layers, style_layers)`` of the paper setting for extractor ``name``."""
    spec = get_spec(name)
    return list(spec.content_layers), list(spec.style_layers)


def resolve_layers(name, layers: Sequence):
    """Map layer names or indices (ints or digit strings) to Keras layer names.

    >>> resolve_layers("vgg19", [0, "3", "block4_conv2"])
    ['block1_conv1', 'block2_conv2', 'block4_conv2']
    """
    spec = get_spec(name)
    resolved = []
    for layer in layers:
        if isinstance(layer, str) and layer.strip().lstrip("-").isdigit():
            layer = int(layer)
        if isinstance(layer, int):
            if not 0 <= layer < len(spec.selectable_layers):
                raise NSTError(f"layer index {layer} out of range for {name} (0..{len(spec.selectable_layers) - 1})")
            resolved.append(spec.selectable_layers[layer])
        else:
            resolved.append(str(layer).strip())
    return resolved


def _load_backbone(spec, weights):
    if weights not in (None, "imagenet"):
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise NSTError(f"--weights: {weights}: no such file")
    try:
        return spec.application(include_top=False, weights=weights, input_shape=(None, None, 3))
    except (ValueError, OSError) as exc:
        what = "ImageNet weights (download or Keras cache)" if weights == "imagenet" else weights
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NSTError(f"--weights: cannot load {what} into {spec.name}: {first_line}") from exc
    except Exception as exc:  # keras.utils.get_file raises bare Exception offline.
        if weights != "imagenet":
            raise
        raise WeightsUnavailable(
            f"--weights: cannot fetch ImageNet weights for {spec.name} ({exc}); "
            "pass --weights=PATH to a local Keras no-top weights file"
        ) from exc


def build_feature_extractor(name="vgg19", layers=None, weights="imagenet", pooling="max", precision="float32"):
    """A frozen model mapping RGB images in [0, 1] to ``{layer_name: features}``.

    Args:
      name: registered extractor (``vgg19``, ``vgg16``, ``resnet50``).
      layers: layer names or indices; default: the paper's content + style layers.
      weights: ``"imagenet"`` (Keras cache, downloaded once), a path to a Keras
        no-top weights file, or ``None`` for random weights (tests).
      pooling: ``"max"`` or ``"avg"``. Gatys et al. replace VGG's max pooling by
        average pooling for slightly smoother results; the conv weights are kept.
      precision: ``"float32"``, or ``"bfloat16"``/``"float16"`` to compute the
        features in 16 bits (see :mod:`nst_tf.precision`); they are returned in that
        type, the input stays float32.
    """
    spec = get_spec(name)
    if layers is None:
        layers = list(dict.fromkeys(spec.content_layers + spec.style_layers))
    layer_names = list(dict.fromkeys(resolve_layers(name, layers)))
    if not layer_names:
        raise NSTError("no feature layers selected")
    if pooling not in POOLINGS:
        raise NSTError(f"--pooling: must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    if pooling == "avg" and not spec.sequential:
        raise NSTError(f"--pooling=avg is only supported for VGG extractors, not {name}")

    with policy_scope(precision):
        backbone = _load_backbone(spec, weights)
        known = {layer.name for layer in backbone.layers}
        missing = [n for n in layer_names if n not in known]
        if missing:
            raise NSTError(f"{name} has no layer {missing[0]!r} (selectable: {', '.join(spec.selectable_layers)})")

        inputs = keras.Input(shape=(None, None, 3), name="images")
        x = CaffePreprocess(name="preprocess")(inputs)
        if spec.sequential:
            outputs = _apply_sequential(backbone, x, layer_names, pooling)
        else:
            truncated = keras.Model(
                backbone.inputs, [backbone.get_layer(n).output for n in layer_names], name=spec.name
            )
            outputs = dict(zip(layer_names, truncated(x)))
        model = keras.Model(inputs, outputs, name=f"{spec.name}_features")
    model.trainable = False
    return model


def _apply_sequential(backbone, x, layer_names, pooling):
    wanted = set(layer_names)
    outputs = {}
    for layer in backbone.layers[1:]:
        if isinstance(layer, keras.layers.MaxPooling2D) and pooling == "avg":
            layer = keras.layers.AveragePooling2D(
                pool_size=layer.pool_size,
                strides=layer.strides,
                padding=layer.padding,
                name=layer.name.replace("pool", "avgpool"),
            )
        x = layer(x)
        if layer.name in wanted:
            outputs[layer.name] = x
            if len(outputs) == len(wanted):
                break
    return {n: outputs[n] for n in layer_names}
