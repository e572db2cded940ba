"""CycleGAN networks (Zhu et al. 2017): the ResNet generator and the 70x70 PatchGAN.

Both follow the authors' released code where it differs from the paper's prose
(as appendix C of Meurisse, Schoffeniels and Vermeylen's INFO8010 report gives it):

* generator ``c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3``:
  reflection padding around the 7x7 and residual convolutions, zero padding 1
  in the stride-2 convolutions, instance norm, ReLU, and a tanh output;
* discriminator ``C64 (no norm), C128, C256, C512 (stride 1), conv -> 1``:
  4x4 convolutions with zero padding 1, instance norm and LeakyReLU(0.2). The
  stride-1 C512 is what makes each output see a 70x70 patch.

Every convolution kernel is re-drawn from N(0, 0.02) and every bias zeroed once
the weights exist, as the authors' ``init_weights`` does after construction.
Our own convolutions that feed an instance norm carry no bias: the norm
subtracts the channel mean, so a bias would cancel exactly.
The generator's stride-2 and transposed convolutions are ``layers.StridedConv2D`` and
``layers.StridedConv2DTranspose``: the Keras layers with the same weights and results,
whose kernel gradient runs 2-3x faster on CPU at batch 1.
Weights are created in ``__init__`` (they do not depend on H and W), so a fresh
model can be restored from a ``tf.train.Checkpoint`` before any call.

Images are RGB in [-1, 1] (the paper's convention); tools convert at the edges.
"""

import keras
import tensorflow as tf

from nst_tf import layers
from nst_tf.models.transform_net import SIZE_MULTIPLE
from nst_tf.models.transform_net import crop_to
from nst_tf.models.transform_net import pad_to_multiple

UPSAMPLING_MODES = ("transpose", "resize", "bilinear")


def init_normal(model, stddev=0.02):
    """Draw every ``kernel`` of ``model`` from N(0, stddev) and zero every ``bias``."""
    initializer = keras.initializers.RandomNormal(mean=0.0, stddev=stddev)
    for weight in model.weights:
        if weight.name == "kernel":
            weight.assign(initializer(weight.shape, dtype=weight.dtype))
        elif weight.name == "bias":
            weight.assign(keras.ops.zeros(weight.shape, dtype=weight.dtype))


class _LayerChain(keras.Model):
    """A model whose body is a fixed sequence of layers, built for RGB input at construction.

    Each layer becomes an attribute named after it, because ``tf.train.Checkpoint``
    does not follow Keras' tracked lists; :attr:`chain` lists them in call order.
    """

    def _set_chain(self, chain):
        shape = (None, None, None, 3)
        for layer in chain:
            setattr(self, layer.name, layer)
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self._chain_names = tuple(layer.name for layer in chain)
        self.built = True
        init_normal(self)

    def build(self, input_shape=None):
        # Weights already exist; accept Keras' build_from_config on load.
        self.built = True

    @property
    def chain(self):
        return [getattr(self, name) for name in self._chain_names]

    def _run_chain(self, x):
        for name in self._chain_names:
            x = getattr(self, name)(x)
        return x


@keras.saving.register_keras_serializable(package="nst_tf")
class ResnetGenerator(_LayerChain):
    """CycleGAN generator: RGB [-1, 1] ``[B, H, W, 3]`` -> RGB [-1, 1], same H, W.

    Args:
      ngf: filters of the first layer (64 in the paper); the trunk has ``4 * ngf``.
      n_blocks: residual blocks, 6 for 128 px training and 9 for 256 px (the paper).
      upsampling: ``"transpose"`` (the paper's fractionally strided convolution)
        or an upsampling then a convolution, which avoids checkerboard artefacts
        (Odena et al. 2016): ``"resize"`` upsamples by nearest neighbour,
        ``"bilinear"`` by bilinear interpolation, which also leaves no 2x2 blocks.

    Sizes that are not a multiple of 4 are reflection-padded at the bottom and
    right and cropped back, so any H, W >= 4 works and nothing shifts.
    """

    def __init__(self, ngf=64, n_blocks=9, upsampling="transpose", **kwargs):
        super().__init__(**kwargs)
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
        if int(ngf) < 1 or int(n_blocks) < 0:
            raise ValueError(f"need ngf >= 1 and n_blocks >= 0, got ngf={ngf}, n_blocks={n_blocks}")
        self.ngf = int(ngf)
        self.n_blocks = int(n_blocks)
        self.upsampling = upsampling
        f = self.ngf
        chain = [layers.ConvBlock(f, 7, name="c7s1")]
        for filters in (2 * f, 4 * f):
            # The authors zero-pad the stride-2 convolutions by 1 on every side.
            chain += [
                keras.layers.ZeroPadding2D(1, name=f"d{filters}_pad"),
                layers.StridedConv2D(filters, 3, strides=2, use_bias=False, name=f"d{filters}_conv"),
                layers.InstanceNormalization(activation="relu", name=f"d{filters}_norm"),
            ]
        chain += [layers.ResidualBlock(4 * f, name=f"r{i + 1}") for i in range(self.n_blocks)]
        for filters in (2 * f, f):
            if upsampling == "transpose":
                chain += [
                    layers.StridedConv2DTranspose(
                        filters, 3, strides=2, padding="same", use_bias=False, name=f"u{filters}_conv"
                    ),
                    layers.InstanceNormalization(activation="relu", name=f"u{filters}_norm"),
                ]
            elif upsampling == "resize":
                chain.append(layers.ConvBlock(filters, 3, upsample=2, name=f"u{filters}"))
            else:
                chain += [
                    keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"u{filters}_bilinear"),
                    layers.ConvBlock(filters, 3, name=f"u{filters}"),
                ]
        chain += [layers.ReflectConv2D(3, 7, name="c7s1_3"), keras.layers.Activation("tanh", name="tanh")]
        self._set_chain(chain)

    def call(self, images):
        padded, size = pad_to_multiple(images, SIZE_MULTIPLE)
        return crop_to(self._run_chain(padded), size)

    def get_config(self):
        return {**super().get_config(), "ngf": self.ngf, "n_blocks": self.n_blocks, "upsampling": self.upsampling}


@keras.saving.register_keras_serializable(package="nst_tf")
class PatchDiscriminator(_LayerChain):
    """70x70 PatchGAN: one real/fake score per overlapping 70x70 patch.

    Input RGB [-1, 1] ``[B, H, W, 3]``; output ``[B, H/8 - 2, W/8 - 2, 1]``
    unbounded scores (30x30 for 256 px), fed to the LSGAN or BCE losses.
    ``ndf`` is the width of the first layer (64 in the paper).
    """

    def __init__(self, ndf=64, **kwargs):
        super().__init__(**kwargs)
        if int(ndf) < 1:
            raise ValueError(f"need ndf >= 1, got {ndf}")
        self.ndf = int(ndf)
        chain = []
        # (width multiplier, stride, instance norm) of C64, C128, C256, C512.
        for mult, stride, norm in ((1, 2, False), (2, 2, True), (4, 2, True), (8, 1, True)):
            name = f"C{self.ndf * mult}"
            chain += [
                keras.layers.ZeroPadding2D(1, name=f"{name}_pad"),
                keras.layers.Conv2D(self.ndf * mult, 4, strides=stride, use_bias=not norm, name=f"{name}_conv"),
            ]
            if norm:
                chain.append(layers.InstanceNormalization(name=f"{name}_norm"))
            chain.append(keras.layers.LeakyReLU(negative_slope=0.2, name=f"{name}_lrelu"))
        chain += [keras.layers.ZeroPadding2D(1, name="out_pad"), keras.layers.Conv2D(1, 4, name="out_conv")]
        self._set_chain(chain)

    def call(self, images):
        return tf.cast(self._run_chain(images), tf.float32)

    def get_config(self):
        return {**super().get_config(), "ndf": self.ndf}
