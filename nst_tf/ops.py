"""Tensor functions behind the layers of :mod:`nst_tf.layers`: instance norm, adaptive instance
norm (AdaIN), mirror padding, nearest upsampling, and the convolution-kernel algebra of the fast paths (sub-pixel and
space-to-depth kernels, row convolutions, strided convolutions whose kernel gradient is one
matmul).

Pure functions of NHWC tensors with dynamic height and width, usable inside a ``tf.function``
with a ``[None, None, None, C]`` signature. Each fast path computes what a plain TensorFlow
op does (``tests/test_ops.py`` checks values and gradients); its docstring says why it is
faster and by how much.
"""

import numpy as np
import tensorflow as tf


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


def channel_mean_std(features, epsilon=1e-5, mask=None):
    """Per-instance, per-channel mean and standard deviation over the positions (H, W).

        μ_bc = Σ_hw m_bhw x_bhwc / Σ_hw m_bhw,   σ_bc = sqrt(Σ_hw m_bhw (x_bhwc - μ_bc)² / Σ_hw m_bhw + ε)

    with ``m = 1`` without a ``mask``: the biased variance of instance norm (Ulyanov et al. 2016)
    with ``ε`` inside the root, so a flat channel has ``σ = sqrt(ε)``, never 0. These are the
    statistics AdaIN transfers and its style loss matches (Huang & Belongie 2017).

    Args:
      features: ``[B, H, W, C]``, any float type; computed in float32.
      epsilon: ``ε``.
      mask: optional ``[B, H, W, 1]`` (or broadcastable) weights in [0, 1]: the statistics of the
        masked positions only (AdaIN's foreground/background control). A mask with no positions
        gives ``μ = 0, σ = sqrt(ε)``.

    Returns:
      ``(mean, std)``, each ``[B, C]`` float32.
    """
    x = tf.cast(features, tf.float32)
    if mask is None:
        mean, variance = tf.nn.moments(x, axes=[1, 2])
        return mean, tf.sqrt(variance + epsilon)
    mask = tf.broadcast_to(tf.cast(mask, tf.float32), tf.concat([tf.shape(x)[:3], [1]], 0))
    count = tf.reduce_sum(mask, axis=[1, 2])
    mean = tf.math.divide_no_nan(tf.reduce_sum(x * mask, axis=[1, 2]), count)
    centred = x - mean[:, tf.newaxis, tf.newaxis]
    variance = tf.math.divide_no_nan(tf.reduce_sum(tf.square(centred) * mask, axis=[1, 2]), count)
    return mean, tf.sqrt(variance + epsilon)


def adain(content, style_mean, style_std, epsilon=1e-5, mask=None):
    """Adaptive instance normalisation, Huang & Belongie 2017 ("Arbitrary Style Transfer in
    Real-time with Adaptive Instance Normalization"), eq. (8):

        AdaIN(c, s) = σ(s) (c - μ(c)) / σ(c) + μ(s)

    per instance and channel, with ``μ``, ``σ`` of :func:`channel_mean_std`. The style enters
    only through its statistics, so it is given as ``(style_mean, style_std)``: ``[B, C]``, or
    ``[1, C]`` (or ``[C]``) for one style over the whole batch.

    ``mask`` (``[B, H, W, 1]`` in [0, 1]) takes ``μ(c)``, ``σ(c)`` over the masked positions only,
    as AdaIN's Torch code does for its foreground/background control; every position is still
    normalised, and the caller keeps the masked ones. Returns float32 ``[B, H, W, C]``.
    """
    content = tf.cast(content, tf.float32)
    mean, std = channel_mean_std(content, epsilon, mask)
    style_mean = tf.cast(style_mean, tf.float32)
    style_std = tf.cast(style_std, tf.float32)
    normalised = (content - mean[:, tf.newaxis, tf.newaxis]) / std[:, tf.newaxis, tf.newaxis]
    return normalised * _per_channel(style_std) + _per_channel(style_mean)


def _per_channel(stat):
    """``[C]`` or ``[B, C]`` -> broadcastable against ``[B, H, W, C]``."""
    return stat[tf.newaxis, tf.newaxis] if stat.shape.rank == 1 else stat[:, tf.newaxis, tf.newaxis]


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
