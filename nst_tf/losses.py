"""Loss functions of neural style transfer, as pure TensorFlow functions.

Notation follows Gatys et al. 2016, "Image Style Transfer Using Convolutional
Neural Networks" (CVPR): layer ``l`` has ``N_l`` feature maps (channels) of
size ``M_l`` (height x width); ``F^l`` is the ``N_l x M_l`` feature matrix of
the generated image, ``P^l`` that of the content image, ``A^l`` the Gram
matrix of the style image. Feature maps are NHWC tensors.

Every loss returns a float32 scalar: the per-image loss averaged over the
batch, so a batch of one gives exactly the paper's value. Features are cast to
float32 first so the losses stay exact under mixed precision.
"""

import tensorflow as tf


def _as_float32(x):
    return tf.cast(x, tf.float32)


def gram_matrix(features, normalize=False):
    """Gram matrix of feature maps, Gatys et al. eq. (3).

        G^l_ij = sum_k F^l_ik F^l_jk

    Args:
      features: ``[B, H, W, C]`` feature maps.
      normalize: divide by ``C * H * W`` as Johnson et al. 2016 do (eq. 3 of
        "Perceptual Losses for Real-Time Style Transfer"), which makes the Gram
        matrix independent of the image size.

    Returns:
      ``[B, C, C]`` float32 Gram matrices.
    """
    x = _as_float32(features)
    shape = tf.shape(x)
    if x.shape[0] == 1:
        # A 2-D product: oneDNN's batched matmul first copies the transposed operand, the
        # 2-D one does not (about a third faster). For larger batches, splitting into 2-D
        # products costs as much again in the gradient's stacking copy.
        gram = _flat_gram(tf.reshape(x, [-1, shape[3]]))[tf.newaxis]
    else:
        gram = _flat_gram(tf.reshape(x, [shape[0], shape[1] * shape[2], shape[3]]))
    if normalize:
        gram /= tf.cast(shape[1] * shape[2] * shape[3], tf.float32)
    return gram


@tf.custom_gradient
def _flat_gram(flat):
    """``G = F^T F`` for ``F`` [M, C] or [B, M, C], with the one-matmul gradient ``dF = F (dG + dG^T)``.

    Autodiff of ``matmul(F, F, transpose_a=True)`` treats the two operands as different
    tensors and spends two ``M x C x C`` products on the gradient; this spends one.
    """

    def gradient(upstream):
        return tf.matmul(flat, upstream + tf.linalg.matrix_transpose(upstream))

    return tf.matmul(flat, flat, transpose_a=True), gradient


def content_loss(features, target, reduction="sum"):
    """Feature reconstruction loss.

    ``reduction="sum"`` is Gatys et al. eq. (1):

        L_content = 1/2 sum_ij (F^l_ij - P^l_ij)^2

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


def style_layer_loss(features, target_gram):
    """One layer's contribution to the style loss, Gatys et al. eq. (4).

        E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2

    Args:
      features: ``[B, H, W, C]`` feature maps of the generated image.
      target_gram: un-normalised style Gram matrix ``A^l``, ``[1 or B, C, C]``.
    """
    gram = gram_matrix(features)
    shape = tf.shape(features)
    n = tf.cast(shape[3], tf.float32)
    m = tf.cast(shape[1] * shape[2], tf.float32)
    per_image = tf.reduce_sum(tf.square(gram - _as_float32(target_gram)), axis=[1, 2])
    return tf.reduce_mean(per_image) / (4.0 * n**2 * m**2)


def _layer_weights(names, layer_weights):
    if layer_weights is None:
        return {name: 1.0 / len(names) for name in names}
    return layer_weights


def style_loss(features, target_grams, layer_weights=None):
    """Total style loss, Gatys et al. eq. (5).

        L_style = sum_l w_l E_l

    Args:
      features: dict ``layer -> [B, H, W, C]`` of the generated image.
      target_grams: dict ``layer -> A^l`` (un-normalised, see :func:`gram_matrix`).
      layer_weights: dict ``layer -> w_l``; default ``1 / L`` for each of the
        ``L`` layers, as in the paper.
    """
    weights = _layer_weights(list(target_grams), layer_weights)
    return tf.add_n(
        [weights[name] * style_layer_loss(features[name], gram) for name, gram in target_grams.items()]
    )


def perceptual_style_loss(features, target_grams, layer_weights=None):
    """Style reconstruction loss of Johnson et al. 2016, eq. (4), summed over layers.

        L_style = sum_j w_j || G_j(y) - G_j(y_s) ||_F^2

    where ``G_j`` is the Gram matrix normalised by ``C_j H_j W_j``
    (``gram_matrix(..., normalize=True)``). ``target_grams`` hold ``G_j(y_s)``
    with that normalisation; ``layer_weights`` default to 1 for every layer.
    """
    weights = layer_weights or {name: 1.0 for name in target_grams}
    terms = []
    for name, target in target_grams.items():
        gram = gram_matrix(features[name], normalize=True)
        per_image = tf.reduce_sum(tf.square(gram - _as_float32(target)), axis=[1, 2])
        terms.append(weights[name] * tf.reduce_mean(per_image))
    return tf.add_n(terms)


def blend_grams(grams, weights=None):
    """Weighted average of several styles' Gram dicts (Gatys et al. 2016, several styles).

        A^l = sum_s v_s A^l_s / sum_s v_s
    """
    if weights is None:
        weights = [1.0] * len(grams)
    if len(weights) != len(grams):
        raise ValueError(f"{len(grams)} styles but {len(weights)} style weights")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("style weights must sum to a positive number")
    return {
        name: tf.add_n([w / total * _as_float32(g[name]) for w, g in zip(weights, grams)])
        for name in grams[0]
    }


def total_variation_loss(images, reduction="sum"):
    """Squared total variation, the smoothness prior of Mahendran & Vedaldi 2015 (beta = 2).

        L_tv = sum_ij (x_{i+1,j} - x_ij)^2 + (x_{i,j+1} - x_ij)^2

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

        L_lap = sum_ij (D(x_c) - D(x))^2_ij

    where ``D`` is the Laplacian of the ``pool_size``-average-pooled image. It
    keeps the content's fine structure (edges) that deep features lose.
    """
    diff = tf.square(laplacian(content_images, pool_size) - laplacian(images, pool_size))
    return tf.reduce_mean(tf.reduce_sum(diff, axis=[1, 2, 3]))


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
