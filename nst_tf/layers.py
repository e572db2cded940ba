"""Keras 3 layers for feed-forward style nets: instance norm, conditional instance norm,
reflection padding, the reflection-padded (upsample-)convolution, the conv and residual
blocks, and convolution layers with faster kernels (:mod:`nst_tf.ops` holds the maths).

We do not use tensorflow-addons: it reached end of life in 2024 and never supported Keras 3.

All layers take NHWC tensors with dynamic height and width, so the nets built from them
run at any image size inside a ``tf.function`` with a ``[None, None, None, 3]`` signature.
"""

import keras
import tensorflow as tf

from nst_tf import ops

_PACKAGE = "nst_tf"


def _get_activation(activation):
    """None stays None (no op in the graph); anything else goes through ``keras.activations.get``."""
    return None if activation is None else keras.activations.get(activation)


def _serialize_activation(activation):
    return None if activation is None else keras.activations.serialize(activation)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InstanceNormalization(keras.layers.Layer):
    """Instance normalisation (Ulyanov et al. 2016) with a learned per-channel affine map,
    then ``activation`` (see :func:`ops.instance_norm_affine` for why it is applied here)."""

    def __init__(self, epsilon=1e-5, center=True, scale=True, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.activation = _get_activation(activation)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones") if self.scale else None
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros") if self.center else None

    def call(self, inputs):
        return ops.instance_norm_affine(inputs, self.gamma, self.beta, self.epsilon, self.activation)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "activation": _serialize_activation(self.activation),
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConditionalInstanceNormalization(keras.layers.Layer):
    """Conditional instance norm (Dumoulin et al. 2017): one gamma/beta row per style.

    Called as ``layer([x, style_weights])`` with ``style_weights`` of shape ``[B, N]``.
    The affine parameters are ``gamma = w @ Gamma`` and ``beta = w @ Beta`` (Dumoulin et al.
    eq. 5 generalised to convex mixes, their section 4.1), so a one-hot row picks a style and a
    convex mix interpolates the styles' parameters.

    Each style owns its own ``gamma_<i>`` / ``beta_<i>`` variables rather than a row of one
    ``[N, C]`` matrix, so that training a newly added style (``style_variables``) cannot touch
    the old styles' parameters whatever optimizer is used. They are plain attributes, not a
    list, because ``tf.train.Checkpoint`` does not follow Keras' tracked lists.
    """

    def __init__(self, num_styles, epsilon=1e-5, activation=None, **kwargs):
        super().__init__(**kwargs)
        if int(num_styles) < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        self.num_styles = int(num_styles)
        self.epsilon = float(epsilon)
        self.activation = _get_activation(activation)

    def build(self, input_shape):
        channels = int(input_shape[0][-1])
        for i in range(self.num_styles):
            setattr(self, f"gamma_{i}", self.add_weight(name=f"gamma_{i}", shape=(channels,), initializer="ones"))
        for i in range(self.num_styles):
            setattr(self, f"beta_{i}", self.add_weight(name=f"beta_{i}", shape=(channels,), initializer="zeros"))

    @property
    def gammas(self):
        return [getattr(self, f"gamma_{i}") for i in range(self.num_styles)]

    @property
    def betas(self):
        return [getattr(self, f"beta_{i}") for i in range(self.num_styles)]

    def style_variables(self, indices):
        """The gamma and beta variables of the styles in ``indices``."""
        return [self.gammas[i] for i in indices] + [self.betas[i] for i in indices]

    def call(self, inputs):
        x, style_weights = inputs
        weights = tf.cast(style_weights, tf.float32)
        gamma = tf.matmul(weights, tf.stack([tf.cast(g, tf.float32) for g in self.gammas]))
        beta = tf.matmul(weights, tf.stack([tf.cast(b, tf.float32) for b in self.betas]))
        return ops.instance_norm_affine(x, gamma, beta, self.epsilon, self.activation)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "num_styles": self.num_styles,
            "epsilon": self.epsilon,
            "activation": _serialize_activation(self.activation),
        }


def _normalize_padding(padding):
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return ((padding[0], padding[0]), (padding[1], padding[1]))
    return tuple(tuple(int(v) for v in p) for p in padding)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReflectionPadding2D(keras.layers.Layer):
    """Reflection padding of H and W: ``padding`` is an int, ``(ph, pw)`` or ``((t, b), (l, r))``."""

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = _normalize_padding(padding)

    def call(self, inputs):
        return ops.reflection_pad(inputs, self.padding)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        b, h, w, c = input_shape
        return (b, None if h is None else h + top + bottom, None if w is None else w + left + right, c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _bias_and_activation(layer, y):
    """The tail of a Keras conv layer's ``call``, for subclasses that compute ``y`` their own way."""
    if layer.use_bias:
        y = y + layer.bias
    return layer.activation(y) if layer.activation is not None else y


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NarrowConv2D(keras.layers.Conv2D):
    """A stride-1, "valid" ``keras.layers.Conv2D`` for few output channels, computed by
    :func:`ops.conv2d_valid_by_rows`. Same weights, config and results as ``Conv2D``."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.strides != (1, 1) or self.padding != "valid" or self.dilation_rate != (1, 1) or self.groups != 1:
            raise ValueError("NarrowConv2D supports only strides=1, padding='valid', no dilation or groups")

    def call(self, inputs):
        return _bias_and_activation(self, ops.conv2d_valid_by_rows(inputs, self.kernel))


def _check_strided(layer):
    if (
        layer.strides == (1, 1)
        or layer.dilation_rate != (1, 1)
        or layer.data_format != "channels_last"
        or getattr(layer, "groups", 1) != 1
        or getattr(layer, "output_padding", None) is not None
    ):
        raise ValueError(
            f"{type(layer).__name__} supports strides > 1, channels_last, and no dilation, groups or output_padding"
        )


class _MatmulKernelGradient:
    """Mixin for a strided Keras convolution layer whose op, ``_convolution(inputs, kernel,
    strides, padding)``, computes the kernel gradient by :func:`ops.conv2d_kernel_gradient`."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        _check_strided(self)

    def call(self, inputs):
        return _bias_and_activation(self, self._convolution(inputs, self.kernel, self.strides, self.padding))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StridedConv2D(_MatmulKernelGradient, keras.layers.Conv2D):
    """A strided ``keras.layers.Conv2D`` whose kernel gradient is computed by
    :func:`ops.conv2d_kernel_gradient`. Same weights, config and results as ``Conv2D``."""

    _convolution = staticmethod(ops.strided_conv2d)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StridedConv2DTranspose(_MatmulKernelGradient, keras.layers.Conv2DTranspose):
    """A strided ``keras.layers.Conv2DTranspose`` whose kernel gradient is computed by
    :func:`ops.conv2d_kernel_gradient`. Same weights, config and results as ``Conv2DTranspose``."""

    _convolution = staticmethod(ops.strided_conv2d_transpose)


# Below this many output channels a large kernel runs faster as row convolutions.
_NARROW_OUTPUT_CHANNELS = 8


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReflectConv2D(keras.layers.Layer):
    """A ``k x k`` convolution on a reflection-padded input, optionally after nearest upsampling.

    With ``strides=s`` and ``upsample=1`` an ``H x W`` input gives ``ceil(H/s) x ceil(W/s)``
    for odd ``k``, like ``padding="same"``, but without the dark borders zero padding leaves.
    """

    def __init__(self, filters, kernel_size, strides=1, upsample=1, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.upsample = int(upsample)
        self.use_bias = bool(use_bias)
        narrow = self.filters < _NARROW_OUTPUT_CHANNELS and self.kernel_size >= 5 and self.strides == 1
        self.conv = (NarrowConv2D if narrow else keras.layers.Conv2D)(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="valid",
            use_bias=self.use_bias,
            dtype=self.dtype_policy,
            name="conv",
        )

    def build(self, input_shape):
        self.conv.build((None, None, None, int(input_shape[-1])))

    @property
    def subpixel(self):
        """True when :func:`ops.upsample_reflect_conv2d` computes this layer (see there)."""
        return self.upsample > 1 and self.strides == 1 and self.kernel_size // 2 < self.upsample

    def call(self, inputs, space_to_depth_in=1, space_to_depth_out=False):
        """Convolve ``inputs``, or, with ``space_to_depth_in=s``, the image ``x`` whose
        ``tf.nn.space_to_depth(x, s)`` form ``inputs`` is (stride 1, no upsampling; through
        :func:`ops.space_to_depth_kernel`). ``space_to_depth_out=True`` makes a sub-pixel layer
        return its output before ``depth_to_space(., upsample)``."""
        if space_to_depth_out and not self.subpixel:
            raise ValueError("space_to_depth_out needs a sub-pixel (upsampling) layer")
        if space_to_depth_in > 1:
            return self._call_on_space_to_depth(inputs, int(space_to_depth_in))
        if self.subpixel:
            x = tf.cast(inputs, self.compute_dtype)
            y = ops.upsample_reflect_conv2d(
                x, tf.cast(self.conv.kernel, x.dtype), self.upsample, depth_to_space=not space_to_depth_out
            )
            if self.use_bias:
                bias = tf.cast(self.conv.bias, y.dtype)
                y = y + (tf.tile(bias, [self.upsample**2]) if space_to_depth_out else bias)
            return y
        x = ops.upsample_nearest(inputs, self.upsample)
        pad = self.kernel_size // 2
        return self.conv(ops.reflection_pad(x, ((pad, pad), (pad, pad))))

    def _call_on_space_to_depth(self, inputs, scale):
        if self.strides != 1 or self.upsample != 1:
            raise ValueError("space_to_depth_in needs a stride-1 layer without upsampling")
        x = tf.cast(inputs, self.compute_dtype)
        kernel = ops.space_to_depth_kernel(tf.cast(self.conv.kernel, x.dtype), scale)
        _, before, after = ops.phase_taps(self.kernel_size, scale)
        y = tf.nn.conv2d(ops.space_to_depth_reflection_pad(x, scale, before, after), kernel, 1, "VALID")
        y = tf.nn.depth_to_space(y, scale)
        return y + tf.cast(self.conv.bias, y.dtype) if self.use_bias else y

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape

        def side(n):
            return None if n is None else -(-n * self.upsample // self.strides)

        return (b, side(h), side(w), self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "upsample": self.upsample,
            "use_bias": self.use_bias,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class UpsampleConv2D(ReflectConv2D):
    """Nearest-neighbour upsampling by ``scale`` then a reflection-padded convolution.

    Odena et al. 2016 ("Deconvolution and checkerboard artifacts"): unlike a strided
    transposed convolution, every output pixel sees the same number of kernel taps, so
    no checkerboard pattern appears.
    """

    def __init__(self, filters, kernel_size, scale=2, **kwargs):
        kwargs.pop("upsample", None)
        kwargs.pop("strides", None)
        super().__init__(filters, kernel_size, strides=1, upsample=scale, **kwargs)
        self.scale = int(scale)

    def get_config(self):
        config = super().get_config()
        del config["upsample"], config["strides"]
        return {**config, "scale": self.scale}


def _make_norm(num_styles, name, activation):
    if num_styles:
        return ConditionalInstanceNormalization(num_styles, activation=activation, name=name)
    return InstanceNormalization(activation=activation, name=name)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConvBlock(keras.layers.Layer):
    """Reflection-padded (upsample-)conv, instance norm (conditional if ``num_styles``), activation.

    With ``num_styles`` the block is called as ``block([x, style_weights])``.
    """

    def __init__(self, filters, kernel_size, strides=1, upsample=1, num_styles=0, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.upsample = int(upsample)
        self.num_styles = int(num_styles or 0)
        self.activation = activation
        # No conv bias: the instance norm right after subtracts any per-channel constant.
        self.conv = ReflectConv2D(
            filters,
            kernel_size,
            strides=strides,
            upsample=upsample,
            use_bias=False,
            dtype=self.dtype_policy,
            name="conv",
        )
        self.act = keras.activations.get(activation)
        self.norm = _make_norm(self.num_styles, "norm", self.act)

    def build(self, input_shape):
        x_shape = input_shape[0] if self.num_styles else input_shape
        self.conv.build(x_shape)
        feature_shape = (None, None, None, self.filters)
        self.norm.build([feature_shape, (None, self.num_styles)] if self.num_styles else feature_shape)

    def call(self, inputs, space_to_depth_out=False):
        """``norm(conv(x))``; a sub-pixel block normalises its output in ``space_to_depth``
        form, and with ``space_to_depth_out=True`` returns it in that form (see
        :meth:`ReflectConv2D.call`)."""
        x, style_weights = inputs if self.num_styles else (inputs, None)
        if not self.conv.subpixel:
            if space_to_depth_out:
                raise ValueError("space_to_depth_out needs an upsampling block")
            return self._normalize(self.conv(x), style_weights)
        y = self.conv(x, space_to_depth_out=True)
        # [B, H, W, s² C] -> [B, H, W s², C] is a free reshape whose channels are the fine
        # image's, so the norm's statistics run over all of its pixels.
        shape = tf.shape(y)
        phases = self.upsample**2
        fine = tf.reshape(y, [shape[0], shape[1], shape[2] * phases, self.filters])
        y = tf.reshape(self._normalize(fine, style_weights), shape)
        return y if space_to_depth_out else tf.nn.depth_to_space(y, self.upsample)

    def _normalize(self, x, style_weights):
        return self.norm([x, style_weights]) if self.num_styles else self.norm(x)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape[0] if self.num_styles else input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "upsample": self.upsample,
            "num_styles": self.num_styles,
            "activation": keras.activations.serialize(self.act),
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResidualBlock(keras.layers.Layer):
    """Johnson et al. 2016 supplementary residual block, with instance norm instead of batch norm.

    ``y = x + N2(conv2(relu(N1(conv1(x)))))`` with 3x3 reflection-padded convolutions of
    ``filters`` channels and no activation after the sum (Gross & Wilber's finding that
    Johnson follows). ``N`` is instance norm, or conditional instance norm when
    ``num_styles`` is set, in which case the block is called as ``block([x, style_weights])``.
    Reflection padding keeps the spatial size, so the identity skip needs no centre crop.
    """

    def __init__(self, filters, kernel_size=3, num_styles=0, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.num_styles = int(num_styles or 0)
        self.block1 = ConvBlock(
            filters, kernel_size, num_styles=self.num_styles, dtype=self.dtype_policy, name="block1"
        )
        self.block2 = ConvBlock(
            filters, kernel_size, num_styles=self.num_styles, activation=None, dtype=self.dtype_policy, name="block2"
        )

    def build(self, input_shape):
        self.block1.build(input_shape)
        self.block2.build(input_shape)

    def call(self, inputs):
        if self.num_styles:
            x, style_weights = inputs
            return x + self.block2([self.block1([x, style_weights]), style_weights])
        return inputs + self.block2(self.block1(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0] if self.num_styles else input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "num_styles": self.num_styles,
        }
