"""Keras 3 layers for feed-forward style nets: instance norm, conditional instance norm,
reflection padding, upsample-convolution, the residual block, and strided convolutions
whose kernel gradient is one matmul.

We do not use tensorflow-addons: it reached end of life in 2024 and never supported Keras 3.

All layers take NHWC tensors with dynamic height and width, so the nets built from them
run at any image size inside a ``tf.function`` with a ``[None, None, None, 3]`` signature.
"""

import keras
import numpy as np
import tensorflow as tf

_PACKAGE = "nst_tf"


def instance_norm_affine(x, gamma, beta, epsilon, activation=None):
    """Normalise each instance and channel over H, W, then scale, shift and apply ``activation``.

    Ulyanov et al. 2016, eq. (2): ``y_bhwc = gamma_bc (x_bhwc - mu_bc) / sqrt(var_bc + eps) + beta_bc``
    with ``mu_bc``, ``var_bc`` the mean and (biased) variance of ``x_b..c`` over H, W.
    ``gamma`` and ``beta`` are ``[C]`` (shared) or ``[B, C]`` (per instance, conditional
    instance norm), or None for 1 and 0.

    Instance norm of ``[B, H, W, C]`` is batch norm, in training mode, of the
    ``[1, H, W, B*C]`` tensor with the batch moved next to the channels, so the fused
    batch-norm kernel (one pass for the moments, one for the output, and a fused
    gradient; oneDNN on CPU) does the work. That is 2-4x faster than ``tf.nn.moments``
    plus element-wise ops, which make five passes over the feature map. The transposes
    only move size-1 dimensions when B = 1, so TensorFlow performs them as reshapes.
    When B > 1 is static (training batches), each image is normalised on its own and
    the results concatenated: one copy instead of two transposes each way, 25-30%
    faster forward and backward at batch 4.

    ``activation`` (element-wise, or None) is applied straight to the batch-norm output,
    before the reshape back, because only there does Grappler fuse a ReLU into the
    batch-norm kernel (``_FusedBatchNormEx``), which saves a pass over the feature map.
    """
    batch = x.shape[0]
    if batch is not None and batch > 1:
        def per_image(param):
            if param is None:
                return [None] * batch
            return tf.split(tf.broadcast_to(tf.cast(param, tf.float32), [batch, tf.shape(x)[-1]]), batch)

        parts = zip(tf.split(x, batch), per_image(gamma), per_image(beta))
        return tf.concat([instance_norm_affine(*part, epsilon, activation) for part in parts], 0)
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    ones = tf.ones([b, c], tf.float32)
    gamma = ones if gamma is None else tf.broadcast_to(tf.cast(gamma, tf.float32), [b, c])
    beta = tf.zeros([b, c], tf.float32) if beta is None else tf.broadcast_to(tf.cast(beta, tf.float32), [b, c])
    stacked = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c])
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(
        stacked, tf.reshape(gamma, [-1]), tf.reshape(beta, [-1]), epsilon=epsilon, is_training=True
    )
    if activation is not None:
        y = activation(y)
    return tf.transpose(tf.reshape(y, [h, w, b, c]), [2, 0, 1, 3])


def _get_activation(activation):
    """None stays None (no op in the graph); anything else goes through ``keras.activations.get``."""
    return None if activation is None else keras.activations.get(activation)


def _serialize_activation(activation):
    return None if activation is None else keras.activations.serialize(activation)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InstanceNormalization(keras.layers.Layer):
    """Instance normalisation (Ulyanov et al. 2016) with a learned per-channel affine map,
    then ``activation`` (see :func:`instance_norm_affine` for why it is applied here)."""

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
        return instance_norm_affine(inputs, self.gamma, self.beta, self.epsilon, self.activation)

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
        return instance_norm_affine(x, gamma, beta, self.epsilon, self.activation)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "num_styles": self.num_styles,
            "epsilon": self.epsilon,
            "activation": _serialize_activation(self.activation),
        }


def reflection_pad(images, padding):
    """Mirror-pad H and W without repeating the edge pixel (``np.pad(mode="reflect")``).

    ``padding`` is ``((top, bottom), (left, right))``; each amount must be smaller than the
    corresponding image side.
    """
    return mirror_pad(images, padding, "REFLECT")


def mirror_pad(images, padding, mode):
    """``tf.pad(images, ..., mode)`` for ``mode`` REFLECT or SYMMETRIC, padding H and W only.

    The forward pass concatenates reversed edge slices, first along W and then along H, so
    both concats copy contiguous runs: 1.3-1.6x faster than the ``MirrorPad`` kernel, whose
    per-element index arithmetic makes it the slowest memory pass in the transform net.
    The gradient is ``MirrorPadGrad``, because the concat's own gradient would build a
    full-size tensor for every edge slice.
    """
    (top, bottom), (left, right) = padding
    paddings = [[0, 0], [top, bottom], [left, right], [0, 0]]

    @tf.custom_gradient
    def pad(x):
        skip = 1 if mode == "REFLECT" else 0
        for axis, (before, after) in ((2, (left, right)), (1, (top, bottom))):
            if not before and not after:
                continue
            size = tf.shape(x)[axis]
            head = tf.reverse(_slice(x, axis, skip, skip + before), [axis])
            tail = tf.reverse(_slice(x, axis, size - skip - after, size - skip), [axis])
            x = tf.concat([head, x, tail], axis)

        def gradient(upstream):
            return tf.raw_ops.MirrorPadGrad(input=upstream, paddings=paddings, mode=mode)

        return x, gradient

    return pad(images)


def _slice(x, axis, start, stop):
    begin = [0, 0, 0, 0]
    size = [-1, -1, -1, -1]
    begin[axis] = start
    size[axis] = stop - start
    return tf.slice(x, begin, size)


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
        return reflection_pad(inputs, self.padding)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        b, h, w, c = input_shape
        return (b, None if h is None else h + top + bottom, None if w is None else w + left + right, c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def upsample_nearest(images, scale):
    """Nearest-neighbour upsampling by an integer factor.

    A broadcast followed by a reshape materialises the result once, with a cheap
    reduce-sum gradient, where ``tf.image.resize`` goes through a general resampling kernel.
    """
    if scale == 1:
        return images
    shape = tf.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    # A reshape, not images[:, :, None, :, None, :]: TFLite has no 6-D strided slice.
    expanded = tf.broadcast_to(tf.reshape(images, [b, h, 1, w, 1, c]), [b, h, scale, w, scale, c])
    return tf.reshape(expanded, [b, h * scale, w * scale, c])


def phase_taps(kernel_size, scale):
    """Where the taps of a ``kernel_size`` convolution on a fine image fall on its
    ``space_to_depth(scale)`` form.

    Returns ``(T, before, after)``. ``T[a, d, x, t] = 1`` when tap ``t`` (row offset
    ``t - kernel_size // 2``) of the output at fine row ``scale * i + a`` reads fine row
    ``scale * (i + d - before) + x``: cell ``i + d - before``, phase ``x``. ``before`` and
    ``after`` are the cells the taps reach past each edge; every tap lands on exactly one
    ``(d, x)``, so a kernel folded with ``T`` holds copies of its entries, not sums.
    """
    pad = kernel_size // 2
    before = -((-pad) // scale)
    after = (scale - 1 + kernel_size - 1 - pad) // scale
    taps = np.zeros([scale, before + after + 1, scale, kernel_size], np.float32)
    for a in range(scale):
        for t in range(kernel_size):
            fine = a + t - pad
            taps[a, fine // scale + before, fine % scale, t] = 1.0
    return taps, before, after


def _fold_kernel(kernel, fold):
    """``sum_t fold[..., t] kernel[t]`` over the ``k²`` taps as one small matmul, reshaped to
    a ``[cells, cells, in_phases * C_in, out_phases * C_out]`` kernel.

    ``fold`` is a 0/1 array ``[cells, cells, in_phases, out_phases, k²]``; a three-operand
    ``tf.einsum`` took 25 ms per call through oneDNN where this matmul is negligible.
    """
    k, _, c_in, c_out = kernel.shape
    cells, _, in_phases, out_phases, _ = fold.shape
    folded = tf.matmul(tf.constant(fold.reshape(-1, k * k), kernel.dtype), tf.reshape(kernel, [k * k, c_in * c_out]))
    folded = tf.reshape(folded, [cells, cells, in_phases, out_phases, c_in, c_out])
    folded = tf.transpose(folded, [0, 1, 2, 4, 3, 5])
    return tf.reshape(folded, [cells, cells, in_phases * c_in, out_phases * c_out])


def subpixel_kernel(kernel, scale):
    """Fold ``kernel`` [k, k, C_in, C_out], applied after nearest upsampling by ``scale``,
    into a kernel [n, n, C_in, scale² C_out] over the original image (``n`` cells from
    :func:`phase_taps`: 3 for a 3x3 kernel).

    Output phase ``(a, b)`` (pixel ``(scale i + a, scale j + b)``) sees input pixel
    ``(i + d - before, j + e - before)`` through every tap that lands on one of its copies,
    so its kernel is ``K_ab[d, e] = sum_{t, u} M[a, d, t] M[b, e, u] K[t, u]`` with
    ``M = sum_x T[:, :, x, :]`` of :func:`phase_taps` (the upsampled image's phases are all
    the same pixel). The phases are ordered ``(a, b, c)`` for ``tf.nn.depth_to_space``.
    """
    taps, before, after = phase_taps(kernel.shape[0], scale)
    m = taps.sum(axis=2)
    cells = before + after + 1
    return _fold_kernel(kernel, np.einsum("adt,beu->deabtu", m, m).reshape(cells, cells, 1, scale * scale, -1))


def space_to_depth_kernel(kernel, scale):
    """Fold ``kernel`` [k, k, C_in, C_out] on a fine image into the kernel
    [n, n, scale² C_in, scale² C_out] that computes the same convolution on the images'
    ``space_to_depth(scale)`` forms: ``K'[d, e, (x, y, c), (a, b, o)] = sum_{t, u}
    T[a, d, x, t] T[b, e, y, u] K[t, u, c, o]`` with ``T`` from :func:`phase_taps`.

    The multiply-adds per fine output value are ``n² s²`` instead of ``k²`` (the zero taps; a
    5x5 kernel for 9x9 at scale 2: 1.23x), in a wider shape, ``scale²`` times the output
    channels, which is what a narrow layer such as the 3-channel RGB output needs.
    """
    taps, before, after = phase_taps(kernel.shape[0], scale)
    cells = before + after + 1
    fold = np.einsum("adxt,beyu->dexyabtu", taps, taps).reshape(cells, cells, scale * scale, scale * scale, -1)
    return _fold_kernel(kernel, fold)


def upsample_reflect_conv2d(images, kernel, scale, depth_to_space=True):
    """``conv(reflect_pad(upsample_nearest(images, scale), k // 2), kernel)`` without building
    the upsampled image (Shi et al. 2016's sub-pixel convolution, with the folded kernel of
    :func:`subpixel_kernel`).

    For ``k // 2 < scale`` the reflected rows of the upsampled image are copies of the edge
    rows, so a 1-cell edge (symmetric) pad of the small image replaces the reflection. The
    convolution then runs at the input's resolution with ``scale²`` times the output
    channels, and ``depth_to_space`` interleaves the phases (skipped with
    ``depth_to_space=False``, for a consumer of the ``space_to_depth`` form). The
    multiply-adds equal the plain path's; it skips writing and padding the upsampled tensor
    and runs oneDNN on a wider output, measured 1.3x faster forward and 1.5-1.9x faster
    forward plus backward for the transform net's upsampling layers (``bench/feedforward.py``).
    """
    _, before, after = phase_taps(kernel.shape[0], scale)
    padded = mirror_pad(images, ((before, after), (before, after)), "SYMMETRIC")
    y = tf.nn.conv2d(padded, subpixel_kernel(kernel, scale), 1, "VALID")
    return tf.nn.depth_to_space(y, scale) if depth_to_space else y


def _phases_to_fine(x, scale, axis):
    """``[B, H, W, s² C]`` (space_to_depth form) -> the fine rows (``axis=1``: ``[B, s H, W, s C]``)
    or columns (``axis=2``: ``[B, H, s W, s C]``) the other phase index still in the channels."""
    shape = tf.shape(x)
    b, h, w, depth = shape[0], shape[1], shape[2], shape[3]
    if axis == 1:
        x = tf.transpose(tf.reshape(x, [b, h, w, scale, depth // scale]), [0, 1, 3, 2, 4])
        return tf.reshape(x, [b, h * scale, w, depth // scale])
    x = tf.transpose(tf.reshape(x, [b * h, w, scale, scale, depth // (scale * scale)]), [0, 1, 3, 2, 4])
    return tf.reshape(x, [b, h, w * scale, depth // scale])


def _fine_to_phases(x, scale, axis):
    """The inverse of :func:`_phases_to_fine`."""
    shape = tf.shape(x)
    b, h, w, depth = shape[0], shape[1], shape[2], shape[3]
    if axis == 1:
        x = tf.transpose(tf.reshape(x, [b, h // scale, scale, w, depth]), [0, 1, 3, 2, 4])
        return tf.reshape(x, [b, h // scale, w, scale * depth])
    x = tf.transpose(tf.reshape(x, [b * h, w // scale, scale, scale, depth // scale]), [0, 1, 3, 2, 4])
    return tf.reshape(x, [b, h, w // scale, scale * depth])


def space_to_depth_reflection_pad(images, scale, before, after):
    """``space_to_depth(reflection_pad(x, scale * before, scale * after), scale)`` computed
    from ``images = space_to_depth(x, scale)``, without building ``x``.

    Only the edge cells are rearranged: each side's few border cells are taken to fine
    rows, mirrored with a gather, and taken back, then concatenated to the body, first
    along W and then along H as in :func:`mirror_pad`. The fine image must be larger than
    the fine padding, and ``images`` at least ``max(before, after) + 1`` cells per side.
    """
    for axis in (2, 1):
        size = tf.shape(images)[axis]
        head = _slice(images, axis, 0, before + 1)
        head_rows = list(range(scale * before, 0, -1))
        tail = _slice(images, axis, size - after - 1, size)
        # The tail's fine rows are numbered from (size - after - 1) * scale; row n + j of the
        # fine image (n its height) mirrors row n - 2 - j.
        tail_rows = [scale * (after + 1) - 2 - j for j in range(scale * after)]
        head = _fine_to_phases(tf.gather(_phases_to_fine(head, scale, axis), head_rows, axis=axis), scale, axis)
        tail = _fine_to_phases(tf.gather(_phases_to_fine(tail, scale, axis), tail_rows, axis=axis), scale, axis)
        images = tf.concat([head, images, tail], axis)
    return images


def conv2d_valid_by_rows(images, kernel):
    """Stride-1 "valid" convolution computed as one ``1 x k`` convolution per kernel row.

    ``(x * K)[h, w] = sum_r (x * K_r)[h + r, w]`` where ``K_r`` is row ``r`` of the
    ``[k, k, C_in, C_out]`` kernel. The ``k`` row convolutions are a single ``1 x k``
    convolution with ``k * C_out`` output channels; the shifted sum over ``r`` is a
    ``k x 1`` convolution with a constant 0/1 kernel that picks channel ``r C_out + c``
    at row offset ``r``. The multiply-adds are those of the plain convolution plus a
    ``C_out / C_in`` share for the sum; what changes is the shape: with ``C_out = 3`` (the RGB
    output layer) oneDNN runs the plain 9x9 convolution at a small fraction of its
    matmul rate, the ``27``-channel one 2.5-3x faster. The sum as a convolution has a
    dense gradient, 10x faster than the gradients of ``k`` shifted slices.
    """
    k, _, c_in, c_out = kernel.shape
    rows = tf.reshape(tf.transpose(kernel, [1, 2, 0, 3]), [1, k, c_in, k * c_out])
    y = tf.nn.conv2d(images, rows, 1, "VALID")
    eye = tf.reshape(tf.eye(k * c_out, dtype=y.dtype), [k, c_out, k * c_out])
    pick = tf.transpose(eye, [0, 2, 1])[:, tf.newaxis]
    return tf.nn.conv2d(y, pick, 1, "VALID")


def _bias_and_activation(layer, y):
    """The tail of a Keras conv layer's ``call``, for subclasses that compute ``y`` their own way."""
    if layer.use_bias:
        y = y + layer.bias
    return layer.activation(y) if layer.activation is not None else y


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NarrowConv2D(keras.layers.Conv2D):
    """A stride-1, "valid" ``keras.layers.Conv2D`` for few output channels, computed by
    :func:`conv2d_valid_by_rows`. Same weights, config and results as ``Conv2D``."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.strides != (1, 1) or self.padding != "valid" or self.dilation_rate != (1, 1) or self.groups != 1:
            raise ValueError("NarrowConv2D supports only strides=1, padding='valid', no dilation or groups")

    def call(self, inputs):
        return _bias_and_activation(self, conv2d_valid_by_rows(inputs, self.kernel))


def _same_padding(size, out, kernel_size, stride):
    """TensorFlow's ``"SAME"`` padding ``(before, after)`` of one spatial axis."""
    total = tf.maximum((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def conv2d_kernel_gradient(inputs, out_grad, kernel_size, strides, padding):
    """The kernel gradient of ``y = tf.nn.conv2d(inputs, W, strides, padding)``, by one matmul.

    ``dL/dW[i, j, c, o] = Σ_{b,y,x} X[b, s_h y + i, s_w x + j, c] · dL/dy[b, y, x, o]``
    with ``X`` the (``"SAME"``-)padded input: the input's ``k x k`` patches at the
    output's positions (``tf.image.extract_patches``) times ``dL/dy``. oneDNN's own
    kernel gradient of a stride-2 convolution runs at a fifth to a third of its forward
    rate at batch 1 on the CycleGAN generator's shapes; patches plus one matmul run up to
    2-3x faster there (at the transform net's batch of 4 the two are level). Returns
    ``[k_h, k_w, C_in, C_out]``.
    """
    k_h, k_w = kernel_size
    s_h, s_w = strides
    if padding == "same":
        shape = tf.shape(inputs)
        grad_shape = tf.shape(out_grad)
        top, bottom = _same_padding(shape[1], grad_shape[1], k_h, s_h)
        left, right = _same_padding(shape[2], grad_shape[2], k_w, s_w)
        inputs = tf.pad(inputs, [[0, 0], [top, bottom], [left, right], [0, 0]])
    patches = tf.image.extract_patches(inputs, [1, k_h, k_w, 1], [1, s_h, s_w, 1], [1, 1, 1, 1], "VALID")
    c_in, c_out = inputs.shape[-1], out_grad.shape[-1]
    grad = tf.matmul(tf.reshape(patches, [-1, k_h * k_w * c_in]), tf.reshape(out_grad, [-1, c_out]), transpose_a=True)
    return tf.reshape(grad, [k_h, k_w, c_in, c_out])


def strided_conv2d(inputs, kernel, strides, padding):
    """``tf.nn.conv2d`` whose kernel gradient is :func:`conv2d_kernel_gradient`."""
    tf_strides = [1, *strides, 1]

    @tf.custom_gradient
    def conv(x, w):
        def grad(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=tf_strides, padding=padding.upper()
            )
            return dx, conv2d_kernel_gradient(x, dy, w.shape[:2], strides, padding)

        return tf.nn.conv2d(x, w, tf_strides, padding.upper()), grad

    # The kernel is read here, outside custom_gradient, so its gradient reaches the variable.
    return conv(inputs, tf.convert_to_tensor(kernel))


def strided_conv2d_transpose(inputs, kernel, strides, padding):
    """``tf.nn.conv_transpose`` (Keras' output size) whose kernel gradient is
    :func:`conv2d_kernel_gradient`: the transpose's kernel gradient is that of the
    convolution it transposes, run on the output gradient with ``inputs`` as its
    output gradient."""
    tf_strides = [1, *strides, 1]
    shape = tf.shape(inputs)
    sides = []
    for axis, (k, s) in enumerate(zip(kernel.shape[:2], strides)):
        n = shape[axis + 1]
        sides.append(n * s if padding == "same" else n * s + max(k - s, 0))
    output_shape = tf.stack([shape[0], *sides, kernel.shape[2]])

    @tf.custom_gradient
    def conv(x, w):
        def grad(dy):
            dx = tf.nn.conv2d(dy, w, tf_strides, padding.upper())
            return dx, conv2d_kernel_gradient(dy, x, w.shape[:2], strides, padding)

        return tf.nn.conv_transpose(x, w, output_shape, tf_strides, padding.upper()), grad

    return conv(inputs, tf.convert_to_tensor(kernel))


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
    strides, padding)``, computes the kernel gradient by :func:`conv2d_kernel_gradient`."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        _check_strided(self)

    def call(self, inputs):
        return _bias_and_activation(self, self._convolution(inputs, self.kernel, self.strides, self.padding))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StridedConv2D(_MatmulKernelGradient, keras.layers.Conv2D):
    """A strided ``keras.layers.Conv2D`` whose kernel gradient is computed by
    :func:`conv2d_kernel_gradient`. Same weights, config and results as ``Conv2D``."""

    _convolution = staticmethod(strided_conv2d)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StridedConv2DTranspose(_MatmulKernelGradient, keras.layers.Conv2DTranspose):
    """A strided ``keras.layers.Conv2DTranspose`` whose kernel gradient is computed by
    :func:`conv2d_kernel_gradient`. Same weights, config and results as ``Conv2DTranspose``."""

    _convolution = staticmethod(strided_conv2d_transpose)


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
        """True when :func:`upsample_reflect_conv2d` computes this layer (see there)."""
        return self.upsample > 1 and self.strides == 1 and self.kernel_size // 2 < self.upsample

    def call(self, inputs, space_to_depth_in=1, space_to_depth_out=False):
        """Convolve ``inputs``, or, with ``space_to_depth_in=s``, the image ``x`` whose
        ``tf.nn.space_to_depth(x, s)`` form ``inputs`` is (stride 1, no upsampling; through
        :func:`space_to_depth_kernel`). ``space_to_depth_out=True`` makes a sub-pixel layer
        return its output before ``depth_to_space(., upsample)``."""
        if space_to_depth_out and not self.subpixel:
            raise ValueError("space_to_depth_out needs a sub-pixel (upsampling) layer")
        if space_to_depth_in > 1:
            return self._call_on_space_to_depth(inputs, int(space_to_depth_in))
        if self.subpixel:
            x = tf.cast(inputs, self.compute_dtype)
            y = upsample_reflect_conv2d(
                x, tf.cast(self.conv.kernel, x.dtype), self.upsample, depth_to_space=not space_to_depth_out
            )
            if self.use_bias:
                bias = tf.cast(self.conv.bias, y.dtype)
                y = y + (tf.tile(bias, [self.upsample**2]) if space_to_depth_out else bias)
            return y
        x = upsample_nearest(inputs, self.upsample)
        pad = self.kernel_size // 2
        return self.conv(reflection_pad(x, ((pad, pad), (pad, pad))))

    def _call_on_space_to_depth(self, inputs, scale):
        if self.strides != 1 or self.upsample != 1:
            raise ValueError("space_to_depth_in needs a stride-1 layer without upsampling")
        x = tf.cast(inputs, self.compute_dtype)
        kernel = space_to_depth_kernel(tf.cast(self.conv.kernel, x.dtype), scale)
        _, before, after = phase_taps(self.kernel_size, scale)
        y = tf.nn.conv2d(space_to_depth_reflection_pad(x, scale, before, after), kernel, 1, "VALID")
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
            filters, kernel_size, strides=strides, upsample=upsample, use_bias=False, dtype=self.dtype_policy, name="conv"
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
        self.block1 = ConvBlock(filters, kernel_size, num_styles=self.num_styles, dtype=self.dtype_policy, name="block1")
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
