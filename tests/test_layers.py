"""Layer maths against numpy, shapes, and config / .keras round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf import layers


def numpy_instance_norm(x, gamma, beta, eps):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


@pytest.fixture
def features(rng):
    # Different scale and offset per instance and channel, so shared statistics would be caught.
    x = rng.normal(size=(3, 7, 5, 4)) * rng.uniform(0.5, 3, size=(3, 1, 1, 4)) + rng.normal(size=(3, 1, 1, 4)) * 4
    return x.astype(np.float32)


def test_instance_norm_matches_numpy_per_instance_and_channel(features, rng):
    layer = layers.InstanceNormalization(epsilon=1e-3)
    layer.build(features.shape)
    gamma = rng.normal(size=4).astype(np.float32)
    beta = rng.normal(size=4).astype(np.float32)
    layer.set_weights([gamma, beta])
    np.testing.assert_allclose(layer(features), numpy_instance_norm(features, gamma, beta, 1e-3), atol=2e-5)


def test_instance_norm_per_image_path_equals_the_dynamic_batch_path(features, rng):
    gamma = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))  # per instance, as in CIN
    beta = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))
    spec = tf.TensorSpec([None, None, None, 4])
    dynamic = tf.function(lambda x, g, b: layers.instance_norm_affine(x, g, b, 1e-5),
                          input_signature=[spec, tf.TensorSpec([None, 4]), tf.TensorSpec([None, 4])])
    static = layers.instance_norm_affine(tf.constant(features), gamma, beta, 1e-5)
    np.testing.assert_allclose(static, dynamic(features, gamma, beta), atol=1e-5)


@pytest.mark.parametrize("static_batch", [True, False])
def test_instance_norm_activation_is_applied_after_the_affine_map(features, rng, static_batch):
    gamma = rng.normal(size=4).astype(np.float32)
    beta = rng.normal(size=4).astype(np.float32)
    expected = np.maximum(numpy_instance_norm(features, gamma, beta, 1e-5), 0.0)
    norm = tf.function(lambda x: layers.instance_norm_affine(x, gamma, beta, 1e-5, tf.nn.relu),
                       input_signature=[tf.TensorSpec(features.shape if static_batch else [None, None, None, 4])])
    np.testing.assert_allclose(norm(features), expected, atol=2e-5)


def test_instance_norm_without_affine_has_no_weights(features):
    layer = layers.InstanceNormalization(center=False, scale=False)
    out = layer(features).numpy()
    assert layer.weights == []
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-3)


def make_cin(features, rng, num_styles=3):
    layer = layers.ConditionalInstanceNormalization(num_styles)
    layer.build([features.shape, (None, num_styles)])
    gammas = rng.normal(size=(num_styles, 4)).astype(np.float32)
    betas = rng.normal(size=(num_styles, 4)).astype(np.float32)
    layer.set_weights(list(gammas) + list(betas))
    return layer, gammas, betas


def test_conditional_instance_norm_one_hot_equals_that_styles_instance_norm(features, rng):
    layer, gammas, betas = make_cin(features, rng)
    styles = np.array([2, 0, 1])
    one_hot = np.eye(3, dtype=np.float32)[styles]
    expected = numpy_instance_norm(features, gammas[styles][:, None, None], betas[styles][:, None, None], 1e-5)
    np.testing.assert_allclose(layer([features, one_hot]), expected, atol=2e-5)


def test_conditional_instance_norm_is_linear_in_the_style_weights(features, rng):
    layer, _, _ = make_cin(features, rng)
    w1 = np.tile(np.float32([[1, 0, 0]]), (3, 1))
    w2 = np.tile(np.float32([[0, 0, 1]]), (3, 1))
    mix = 0.3 * w1 + 0.7 * w2
    out = layer([features, mix]).numpy()
    np.testing.assert_allclose(out, 0.3 * layer([features, w1]).numpy() + 0.7 * layer([features, w2]).numpy(), atol=1e-4)
    assert not np.allclose(out, layer([features, w1]).numpy(), atol=1e-2)


def test_conditional_instance_norm_style_variables(features, rng):
    layer, gammas, _ = make_cin(features, rng)
    selected = layer.style_variables([1])
    assert len(selected) == 2
    np.testing.assert_array_equal(selected[0].numpy(), gammas[1])


@pytest.mark.parametrize("padding", [1, (2, 3), ((1, 2), (3, 0))])
def test_reflection_padding_matches_numpy_reflect(features, padding):
    layer = layers.ReflectionPadding2D(padding)
    (t, b), (l, r) = layer.padding
    expected = np.pad(features, ((0, 0), (t, b), (l, r), (0, 0)), mode="reflect")
    out = layer(features)
    np.testing.assert_array_equal(out, expected)
    assert tuple(layer.compute_output_shape(features.shape)) == expected.shape


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

    y, grad = value_and_gradient(lambda t: layers.mirror_pad(t, padding, mode))
    y_ref, grad_ref = value_and_gradient(lambda t: tf.pad(t, paddings, mode=mode))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(grad, grad_ref, atol=1e-6)


def test_nearest_upsampling_repeats_pixels(features):
    np.testing.assert_array_equal(
        layers.upsample_nearest(tf.constant(features), 2), features.repeat(2, axis=1).repeat(2, axis=2)
    )


def test_upsample_conv_shape_and_equivalence(features):
    layer = layers.UpsampleConv2D(6, 3, scale=2)
    out = layer(features)
    assert out.shape == (3, 14, 10, 6)
    upsampled = features.repeat(2, axis=1).repeat(2, axis=2)
    padded = np.pad(upsampled, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    kernel, bias = layer.get_weights()
    expected = tf.nn.conv2d(padded, kernel, 1, "VALID") + bias
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("strides", [1, 2])
def test_reflect_conv_keeps_same_padding_size(strides):
    out = layers.ReflectConv2D(2, 3, strides=strides)(np.zeros((1, 9, 8, 3), np.float32))
    assert out.shape == (1, -(-9 // strides), -(-8 // strides), 2)


def test_residual_block_keeps_shape_and_is_identity_plus_branch(features):
    block = layers.ResidualBlock(4)
    out = block(features).numpy()
    assert out.shape == features.shape
    branch = block.block2(block.block1(features)).numpy()
    np.testing.assert_allclose(out, features + branch, atol=1e-5)


def conditional_block_call(block, x):
    return block([x, np.float32([[0.2, 0.8]] * x.shape[0])])


LAYER_CASES = [
    (lambda: layers.InstanceNormalization(epsilon=1e-3, center=False), lambda layer, x: layer(x)),
    (lambda: layers.InstanceNormalization(activation="relu"), lambda layer, x: layer(x)),
    (lambda: layers.ConditionalInstanceNormalization(2), conditional_block_call),
    (lambda: layers.ConditionalInstanceNormalization(2, activation="relu"), conditional_block_call),
    (lambda: layers.ReflectionPadding2D((1, 2)), lambda layer, x: layer(x)),
    (lambda: layers.UpsampleConv2D(3, 3, scale=2), lambda layer, x: layer(x)),
    (lambda: layers.ConvBlock(5, 3, strides=2, num_styles=2), conditional_block_call),
    (lambda: layers.ResidualBlock(4), lambda layer, x: layer(x)),
    (lambda: layers.ResidualBlock(4, num_styles=2), conditional_block_call),
    (lambda: layers.StridedConv2D(3, 3, strides=2, activation="relu"), lambda layer, x: layer(x)),
    (lambda: layers.StridedConv2DTranspose(3, 3, strides=2, padding="same"), lambda layer, x: layer(x)),
]


@pytest.mark.parametrize("make, apply", LAYER_CASES)
def test_layer_config_round_trip(make, apply, features, rng, tmp_path):
    layer = make()
    out = apply(layer, features)
    for v in layer.weights:  # make gamma/beta non-trivial so a lost weight shows
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    out = apply(layer, features).numpy()

    clone = type(layer).from_config(layer.get_config())
    apply(clone, features)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(apply(clone, features), out)

    inputs = keras.Input((7, 5, 4))
    if getattr(layer, "num_styles", 0):
        weights_in = keras.Input((2,))
        model = keras.Model([inputs, weights_in], layer([inputs, weights_in]))
        args = [features, np.float32([[0.2, 0.8]] * 3)]
    else:
        model = keras.Model(inputs, layer(inputs))
        args = features
    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(args), out)


@pytest.mark.parametrize("k, c_out", [(9, 3), (3, 2)])
def test_row_convolution_matches_plain_convolution(rng, k, c_out):
    x = tf.constant(rng.normal(size=(2, 13, 11, 5)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(k, k, 5, c_out)).astype(np.float32))
    np.testing.assert_allclose(
        layers.conv2d_valid_by_rows(x, kernel), tf.nn.conv2d(x, kernel, 1, "VALID"), rtol=1e-4, atol=1e-4
    )
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = tf.reduce_sum(tf.sin(layers.conv2d_valid_by_rows(x, kernel)))
        plain = tf.reduce_sum(tf.sin(tf.nn.conv2d(x, kernel, 1, "VALID")))
    for a, b in zip(tape.gradient(ours, [x, kernel]), tape.gradient(plain, [x, kernel])):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_narrow_output_reflect_conv_uses_row_convolution():
    assert isinstance(layers.ReflectConv2D(3, 9).conv, layers.NarrowConv2D)
    assert type(layers.ReflectConv2D(32, 9).conv) is keras.layers.Conv2D
    with pytest.raises(ValueError):
        layers.NarrowConv2D(3, 9, strides=2)


@pytest.mark.parametrize("scale, k", [(2, 3), (3, 5), (2, 1)])
def test_subpixel_upsample_conv_matches_upsample_then_conv(rng, scale, k):
    x = tf.constant(rng.normal(size=(2, 6, 5, 4)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(k, k, 4, 3)).astype(np.float32))

    def plain(x, kernel):
        pad = k // 2
        upsampled = layers.upsample_nearest(x, scale)
        return tf.nn.conv2d(layers.reflection_pad(upsampled, ((pad, pad), (pad, pad))), kernel, 1, "VALID")

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = layers.upsample_reflect_conv2d(x, kernel, scale)
        reference = plain(x, kernel)
        ours_loss = tf.reduce_sum(tf.sin(ours))
        reference_loss = tf.reduce_sum(tf.sin(reference))
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)
    for a, b in zip(tape.gradient(ours_loss, [x, kernel]), tape.gradient(reference_loss, [x, kernel])):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


STRIDED_CASES = [
    (layers.StridedConv2D, keras.layers.Conv2D),
    (layers.StridedConv2DTranspose, keras.layers.Conv2DTranspose),
]


@pytest.mark.parametrize("ours, keras_class", STRIDED_CASES)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kernel_size, strides", [(3, 2), (4, 2), (3, (2, 3))])
@pytest.mark.parametrize("shape", [(2, 9, 12, 3), (1, 8, 8, 4), (1, 7, 5, 2)])
def test_strided_convolutions_match_keras_values_and_gradients(rng, ours, keras_class, padding, kernel_size, strides,
                                                              shape):
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    reference = keras_class(5, kernel_size, strides=strides, padding=padding)
    layer = ours(5, kernel_size, strides=strides, padding=padding)
    reference.build(shape)
    layer.build(shape)
    layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in reference.get_weights()])
    reference.set_weights(layer.get_weights())

    def values_and_gradients(net):
        # A tf.function with unknown H and W, as the nets are trained and exported.
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, shape[-1]])])
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = net(x)
                loss = tf.reduce_sum(tf.sin(y) * y)
            return [y, *tape.gradient(loss, [x, *net.trainable_variables])]

        return run(x)

    ours_out, reference_out = values_and_gradients(layer), values_and_gradients(reference)
    assert len(ours_out) == 4  # output, input, kernel and bias gradients
    for a, b in zip(ours_out, reference_out):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_strided_convolution_layers_need_strides():
    for make in (layers.StridedConv2D, layers.StridedConv2DTranspose):
        with pytest.raises(ValueError, match="strides > 1"):
            make(4, 3)
    with pytest.raises(ValueError, match="strides > 1"):
        layers.StridedConv2D(4, 3, strides=2, groups=2)


def test_upsample_conv_takes_the_subpixel_path_only_where_it_is_exact():
    assert layers.UpsampleConv2D(4, 3, scale=2).subpixel
    assert not layers.UpsampleConv2D(4, 5, scale=2).subpixel
    assert not layers.ReflectConv2D(4, 3).subpixel


@pytest.mark.parametrize("scale, k", [(2, 9), (2, 3), (3, 5), (2, 4)])
def test_phase_taps_place_every_tap_once(scale, k):
    taps, before, after = layers.phase_taps(k, scale)
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
    _, before, after = layers.phase_taps(k, scale)
    ours = layers.space_to_depth_reflection_pad(tf.nn.space_to_depth(x, scale), scale, before, after)
    padded = np.pad(x, ((0, 0), (scale * before, scale * after), (scale * before, scale * after), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(ours, tf.nn.space_to_depth(padded, scale))


@pytest.mark.parametrize("scale, k, filters", [(2, 9, 3), (2, 3, 5), (3, 5, 2)])
def test_reflect_conv_on_space_to_depth_input_matches_the_plain_layer(rng, scale, k, filters):
    layer = layers.ReflectConv2D(filters, k)
    x = tf.constant(rng.normal(size=(2, 6 * scale, 5 * scale, 4)).astype(np.float32))
    layer.build(x.shape)
    layer.conv.bias.assign(rng.normal(size=filters).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = layer(tf.nn.space_to_depth(x, scale), space_to_depth_in=scale)
        plain = layer(x)
        ours_loss, plain_loss = tf.reduce_sum(tf.sin(ours)), tf.reduce_sum(tf.sin(plain))
    np.testing.assert_allclose(ours, plain, rtol=1e-4, atol=1e-4)
    variables = [x] + layer.trainable_variables
    for a, b in zip(tape.gradient(ours_loss, variables), tape.gradient(plain_loss, variables)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("num_styles", [0, 2])
def test_upsample_block_space_to_depth_output_is_its_output_before_depth_to_space(features, rng, num_styles):
    block = layers.ConvBlock(6, 3, upsample=2, num_styles=num_styles)
    inputs = [features, np.float32([[0.3, 0.7]] * 3)] if num_styles else features
    block(inputs)
    for variable in block.norm.trainable_variables:
        variable.assign(rng.normal(size=variable.shape).astype(np.float32))
    out = block(inputs)
    assert out.shape == (3, 14, 10, 6)
    np.testing.assert_allclose(tf.nn.depth_to_space(block(inputs, space_to_depth_out=True), 2), out, atol=1e-6)
    # The norm's statistics are the fine image's, as with the plain upsample-conv and norm.
    upsampled = tf.nn.conv2d(
        layers.reflection_pad(layers.upsample_nearest(features, 2), ((1, 1), (1, 1))), block.conv.conv.kernel, 1, "VALID"
    )
    expected = block.norm([upsampled, inputs[1]]) if num_styles else block.norm(upsampled)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_space_to_depth_options_need_a_layer_that_supports_them():
    with pytest.raises(ValueError, match="sub-pixel"):
        layers.ReflectConv2D(2, 3)(np.zeros((1, 8, 8, 3), np.float32), space_to_depth_out=True)
    with pytest.raises(ValueError, match="stride-1"):
        layers.ReflectConv2D(2, 3, strides=2)(np.zeros((1, 8, 8, 12), np.float32), space_to_depth_in=2)
    with pytest.raises(ValueError, match="upsampling block"):
        layers.ConvBlock(2, 3)(np.zeros((1, 8, 8, 3), np.float32), space_to_depth_out=True)
