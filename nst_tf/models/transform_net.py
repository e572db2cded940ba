"""Johnson et al. 2016 image transformation network, with instance norm (Ulyanov et al. 2016).

Architecture (Johnson et al. supplementary, Table 1), channel counts times ``width``:

    9x9 conv 32 -> 3x3 conv 64 stride 2 -> 3x3 conv 128 stride 2
    -> 5 residual blocks of 128 -> upsample-conv 64 -> upsample-conv 32 -> 9x9 conv 3

Every conv but the last is followed by instance norm and ReLU. Convolutions are reflection
padded, and the two fractionally-strided convolutions of the paper are nearest-neighbour
upsampling followed by a convolution (no checkerboard artefacts). The output is
``sigmoid(z)``, which equals Johnson's scaled tanh ``(tanh(z/2) + 1) / 2`` mapped to [0, 1].

The trunk is shared with :class:`nst_tf.models.multistyle.MultiStyleNet`, which swaps every
instance norm for a conditional one.
"""

import keras
import tensorflow as tf

from nst_tf import layers

# The two stride-2 stages need H and W divisible by 4 to come back to the input size.
SIZE_MULTIPLE = 4


def pad_to_multiple(images, multiple):
    """Reflection-pad NHWC ``images`` at the bottom and right up to a multiple of ``multiple``.

    Returns ``(padded, (h, w))`` with the original size, for :func:`crop_to`. Padding only
    the bottom and right edges and cropping the top-left ``h x w`` back keeps every pixel at
    its own coordinates, so the image is not shifted. H and W must exceed the pad amounts
    (reflection does not repeat the edge pixel).
    """
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    pad_h = (-h) % multiple
    pad_w = (-w) % multiple
    padded = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")
    return padded, (h, w)


def crop_to(images, size):
    """The top-left ``size = (h, w)`` window of NHWC ``images``: the inverse of :func:`pad_to_multiple`."""
    h, w = size
    return images[:, :h, :w, :]


def scaled_channels(channels, width):
    """``channels * width`` rounded, at least 1: the width multiplier of smaller nets."""
    return max(1, int(round(channels * width)))


class StyleTrunk(keras.Model):
    """The Johnson trunk; with ``num_styles`` its norms are conditional (Dumoulin et al.).

    Weights are created in ``__init__`` (they do not depend on H and W), so a fresh model can
    be restored from a ``tf.train.Checkpoint`` or have variables copied before any call.
    """

    def __init__(self, width=1.0, num_residual_blocks=5, num_styles=0, **kwargs):
        super().__init__(**kwargs)
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.width = float(width)
        self.num_residual_blocks = int(num_residual_blocks)
        self._num_styles = int(num_styles)
        c32, c64, c128 = (scaled_channels(c, self.width) for c in (32, 64, 128))
        # Blocks are attributes, not lists: tf.train.Checkpoint does not follow Keras' tracked lists.
        specs = [
            ("conv1", dict(filters=c32, kernel_size=9)),
            ("conv2", dict(filters=c64, kernel_size=3, strides=2)),
            ("conv3", dict(filters=c128, kernel_size=3, strides=2)),
        ]
        specs += [(f"residual{i + 1}", None) for i in range(self.num_residual_blocks)]
        specs += [
            ("upconv1", dict(filters=c64, kernel_size=3, upsample=2)),
            ("upconv2", dict(filters=c32, kernel_size=3, upsample=2)),
        ]
        self._block_names = [name for name, _ in specs]
        for name, kwargs in specs:
            if kwargs is None:
                block = layers.ResidualBlock(c128, num_styles=self._num_styles, name=name)
            else:
                block = layers.ConvBlock(num_styles=self._num_styles, name=name, **kwargs)
            setattr(self, name, block)
        self.output_conv = layers.ReflectConv2D(3, 9, name="output_conv")
        self._build_layers()

    @property
    def blocks(self):
        """The normalised blocks in call order (all but the output convolution)."""
        return [getattr(self, name) for name in self._block_names]

    def _build_layers(self):
        channels = 3
        for block in self.blocks:
            shape = (None, None, None, channels)
            block.build([shape, (None, self._num_styles)] if self._num_styles else shape)
            channels = block.filters
        self.output_conv.build((None, None, None, channels))
        self.built = True

    def build(self, input_shape=None):
        # Weights already exist; accept Keras' build_from_config on load.
        self.built = True

    def _trunk(self, images, style_weights=None):
        x, size = pad_to_multiple(images, SIZE_MULTIPLE)
        *body, last = self.blocks

        def call(block, x, **kwargs):
            return block([x, style_weights] if self._num_styles else x, **kwargs)

        for block in body:
            x = call(block, x)
        # The last upsample-conv hands its output over in space_to_depth form and the output
        # conv reads it there: the largest feature map is never interleaved or padded, and
        # the RGB conv runs with 4x the output channels (1024 px: 35 ms of 1.0 s).
        x = call(last, x, space_to_depth_out=True)
        logits = tf.cast(self.output_conv(x, space_to_depth_in=last.upsample), tf.float32)
        return crop_to(tf.sigmoid(logits), size)

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "num_residual_blocks": self.num_residual_blocks,
        }


@keras.saving.register_keras_serializable(package="nst_tf")
class TransformNet(StyleTrunk):
    """Johnson et al. 2016 transform net: RGB [0, 1] ``[B, H, W, 3]`` -> RGB [0, 1], same H, W.

    ``width`` scales every layer's channel count (0.5 gives about a quarter of the FLOPs);
    ``num_residual_blocks`` is 5 in the paper. Any H, W >= 5 works: sizes that are not a
    multiple of 4 are reflection-padded at the bottom/right and cropped back.
    """

    def __init__(self, width=1.0, num_residual_blocks=5, **kwargs):
        super().__init__(width=width, num_residual_blocks=num_residual_blocks, num_styles=0, **kwargs)

    def call(self, images):
        return self._trunk(images)
