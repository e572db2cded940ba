"""The tensor functions of nst_tf.ops against numpy or the plain TensorFlow computation they
replace: values and gradients."""

import numpy as np
import pytest
import tensorflow as tf

from nst_tf import ops


def numpy_instance_norm(x, gamma, beta, eps):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


@pytest.mark.parametrize("per_instance", [False, True])
def test_instance_norm_matches_numpy_per_instance_and_channel(feature_maps, rng, per_instance):
    # [C] parameters as in instance norm, [B, C] as conditional instance norm computes them.
    shape = (3, 4) if per_instance else (4,)
    gamma = rng.normal(size=shape).astype(np.float32)
    beta = rng.normal(size=shape).astype(np.float32)
    expand = (lambda p: p[:, None, None]) if per_instance else (lambda p: p)
    np.testing.assert_allclose(
        ops.instance_norm_affine(feature_maps, gamma, beta, 1e-3),
        numpy_instance_norm(feature_maps, expand(gamma), expand(beta), 1e-3),
        atol=2e-5,
    )


def test_instance_norm_per_image_path_equals_the_dynamic_batch_path(feature_maps, rng):
    gamma = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))  # per instance, as in CIN
    beta = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))
    spec = tf.TensorSpec([None, None, None, 4])
    dynamic = tf.function(
        lambda x, g, b: ops.instance_norm_affine(x, g, b, 1e-5),
        input_signature=[spec, tf.TensorSpec([None, 4]), tf.TensorSpec([None, 4])],
    )
    static = ops.instance_norm_affine(tf.constant(feature_maps), gamma, beta, 1e-5)
    np.testing.assert_allclose(static, dynamic(feature_maps, gamma, beta), atol=1e-5)


@pytest.mark.parametrize("static_batch", [True, False])
def test_instance_norm_activation_is_applied_after_the_affine_map(feature_maps, rng, static_batch):
    gamma = rng.normal(size=4).astype(np.float32)
    beta = rng.normal(size=4).astype(np.float32)
    expected = np.maximum(numpy_instance_norm(feature_maps, gamma, beta, 1e-5), 0.0)
    norm = tf.function(
        lambda x: ops.instance_norm_affine(x, gamma, beta, 1e-5, tf.nn.relu),
        input_signature=[tf.TensorSpec(feature_maps.shape if static_batch else [None, None, None, 4])],
    )
    np.testing.assert_allclose(norm(feature_maps), expected, atol=2e-5)


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
@pytest.mark.parametrize("padding", [((1, 1), (1, 1)), ((2, 0), (0, 3)), ((4, 4), (4, 4))])
def test_mirror_pad_values_and_gradient_match_tf_pad(rng, mode, padding):
    x = tf.constant(rng.normal(size=(2, 9, 6, 3)).astype(np.float32))
    upstream = rng.normal(size=(2, 9 + sum(padding[0]), 6 + sum(padding[1]), 3)).astype(np.float32)
    paddings = [[0, 0], list(padding[0]), list(padding[1]), [0, 0]]

    def value_and_gradient(pad):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = pad(x)
        return y, tape.gradient(y, x, output_gradients=tf.constant(upstream))

    y, grad = value_and_gradient(lambda t: ops.mirror_pad(t, padding, mode))
    y_ref, grad_ref = value_and_gradient(lambda t: tf.pad(t, paddings, mode=mode))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(grad, grad_ref, atol=1e-6)


def test_nearest_upsampling_repeats_pixels(feature_maps):
    np.testing.assert_array_equal(
        ops.upsample_nearest(tf.constant(feature_maps), 2), feature_maps.repeat(2, axis=1).repeat(2, axis=2)
    )


@pytest.mark.parametrize("k, c_out", [(9, 3), (3, 2)])
def test_row_convolution_matches_plain_convolution(rng, k, c_out):
    x = tf.constant(rng.normal(size=(2, 13, 11, 5)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(k, k, 5, c_out)).astype(np.float32))
    np.testing.assert_allclose(
        ops.conv2d_valid_by_rows(x, kernel), tf.nn.conv2d(x, kernel, 1, "VALID"), rtol=1e-4, atol=1e-4
    )
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = tf.reduce_sum(tf.sin(ops.conv2d_valid_by_rows(x, kernel)))
        plain = tf.reduce_sum(tf.sin(tf.nn.conv2d(x, kernel, 1, "VALID")))
    for a, b in zip(tape.gradient(ours, [x, kernel]), tape.gradient(plain, [x, kernel])):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("scale, k", [(2, 3), (3, 5), (2, 1)])
def test_subpixel_upsample_conv_matches_upsample_then_conv(rng, scale, k):
    x = tf.constant(rng.normal(size=(2, 6, 5, 4)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(k, k, 4, 3)).astype(np.float32))

    def plain(x, kernel):
        pad = k // 2
        upsampled = ops.upsample_nearest(x, scale)
        return tf.nn.conv2d(ops.reflection_pad(upsampled, ((pad, pad), (pad, pad))), kernel, 1, "VALID")

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = ops.upsample_reflect_conv2d(x, kernel, scale)
        reference = plain(x, kernel)
        ours_loss = tf.reduce_sum(tf.sin(ours))
        reference_loss = tf.reduce_sum(tf.sin(reference))
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)
    for a, b in zip(tape.gradient(ours_loss, [x, kernel]), tape.gradient(reference_loss, [x, kernel])):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("scale, k", [(2, 9), (2, 3), (3, 5), (2, 4)])
def test_phase_taps_place_every_tap_once(scale, k):
    taps, before, after = ops.phase_taps(k, scale)
    assert taps.shape == (scale, before + after + 1, scale, k)
    np.testing.assert_array_equal(taps.sum(axis=(1, 2)), np.ones((scale, k)))
    for a in range(scale):
        for t in range(k):
            (d,), (x,) = np.nonzero(taps[a, :, :, t])
            assert scale * (d - before) + x == a + t - k // 2


@pytest.mark.parametrize("shape", [(2, 12, 10, 3), (1, 8, 6, 2), (1, 10, 18, 1)])
@pytest.mark.parametrize("scale, k", [(2, 9), (2, 3), (3, 5)])
def test_space_to_depth_reflection_pad_equals_padding_the_fine_image(rng, shape, scale, k):
    x = rng.normal(size=(shape[0], shape[1] // 2 * scale, shape[2] // 2 * scale, shape[3])).astype(np.float32)
    _, before, after = ops.phase_taps(k, scale)
    ours = ops.space_to_depth_reflection_pad(tf.nn.space_to_depth(x, scale), scale, before, after)
    padded = np.pad(
        x, ((0, 0), (scale * before, scale * after), (scale * before, scale * after), (0, 0)), mode="reflect"
    )
    np.testing.assert_array_equal(ours, tf.nn.space_to_depth(padded, scale))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kernel_size, strides", [(3, (2, 2)), (4, (2, 3))])
def test_conv2d_kernel_gradient_matches_the_convolutions_own(rng, padding, kernel_size, strides):
    x = tf.constant(rng.normal(size=(2, 11, 9, 3)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, 3, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        y = tf.nn.conv2d(x, kernel, [1, *strides, 1], padding.upper())
    upstream = tf.constant(rng.normal(size=y.shape).astype(np.float32))
    expected = tape.gradient(y, kernel, output_gradients=upstream)
    ours = ops.conv2d_kernel_gradient(x, upstream, (kernel_size, kernel_size), strides, padding)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def numpy_mean_std(x, eps, mask=None):
    mask = np.ones(x.shape[:3] + (1,)) if mask is None else mask
    count = mask.sum(axis=(1, 2))
    mean = (x * mask).sum(axis=(1, 2)) / count
    var = ((x - mean[:, None, None]) ** 2 * mask).sum(axis=(1, 2)) / count
    return mean, np.sqrt(var + eps)


def test_channel_mean_std_matches_numpy_per_instance_and_channel(feature_maps):
    mean, std = ops.channel_mean_std(feature_maps, epsilon=1e-3)
    expected_mean, expected_std = numpy_mean_std(feature_maps.astype(np.float64), 1e-3)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, expected_std, rtol=1e-5)
    np.testing.assert_allclose(std, np.sqrt(feature_maps.var(axis=(1, 2)) + 1e-3), rtol=1e-5)


def test_channel_mean_std_of_masked_positions(feature_maps, rng):
    mask = (rng.random(feature_maps.shape[:3] + (1,)) > 0.4).astype(np.float32)
    mean, std = ops.channel_mean_std(feature_maps, 1e-5, mask)
    expected_mean, expected_std = numpy_mean_std(feature_maps.astype(np.float64), 1e-5, mask)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, expected_std, rtol=1e-5)
    # An empty mask gives finite statistics (mean 0, std sqrt(eps)), not NaN.
    empty_mean, empty_std = ops.channel_mean_std(feature_maps, 1e-4, np.zeros_like(mask))
    np.testing.assert_array_equal(empty_mean, 0.0)
    np.testing.assert_allclose(empty_std, 1e-2, rtol=1e-6)


@pytest.mark.parametrize("per_instance", [False, True])
def test_adain_matches_the_formula_in_numpy(feature_maps, rng, per_instance):
    """t = σ(s) (c - μ(c)) / σ(c) + μ(s), per instance and channel; the output has the style's statistics."""
    style = (rng.normal(size=(3, 6, 9, 4)) * 2.5 + 1.5).astype(np.float32)
    style_mean, style_std = numpy_mean_std(style.astype(np.float64), 1e-5)
    if not per_instance:
        style_mean, style_std = style_mean[:1], style_std[:1]
    content_mean, content_std = numpy_mean_std(feature_maps.astype(np.float64), 1e-5)
    expected = (
        style_std[:, None, None] * (feature_maps - content_mean[:, None, None]) / content_std[:, None, None]
        + style_mean[:, None, None]
    )
    got = ops.adain(feature_maps, style_mean.astype(np.float32), style_std.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    out_mean, out_std = numpy_mean_std(got.numpy().astype(np.float64), 0.0)
    np.testing.assert_allclose(out_mean, np.broadcast_to(style_mean, out_mean.shape), atol=1e-4)
    np.testing.assert_allclose(out_std, np.broadcast_to(style_std, out_std.shape), rtol=1e-3)


def test_adain_with_a_mask_normalises_by_the_masked_statistics(feature_maps, rng):
    mask = (rng.random(feature_maps.shape[:3] + (1,)) > 0.5).astype(np.float32)
    style_mean = rng.normal(size=4).astype(np.float32)
    style_std = rng.uniform(0.5, 2, size=4).astype(np.float32)
    content_mean, content_std = numpy_mean_std(feature_maps.astype(np.float64), 1e-5, mask)
    expected = style_std * (feature_maps - content_mean[:, None, None]) / content_std[:, None, None] + style_mean
    got = ops.adain(feature_maps, style_mean, style_std, mask=mask)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
