"""Keras layers: each against the op or plain Keras layer it stands for, shapes, and config /
.keras round trips (the ops themselves are tested in test_ops.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf import layers
from nst_tf import ops


def test_instance_norm_layer_applies_its_affine_parameters(feature_maps, rng):
    layer = layers.InstanceNormalization(epsilon=1e-3, activation="relu")
    layer.build(feature_maps.shape)
    gamma = rng.normal(size=4).astype(np.float32)
    beta = rng.normal(size=4).astype(np.float32)
    layer.set_weights([gamma, beta])
    np.testing.assert_allclose(
        layer(feature_maps), ops.instance_norm_affine(feature_maps, gamma, beta, 1e-3, tf.nn.relu), atol=1e-6
    )


def test_instance_norm_without_affine_has_no_weights(feature_maps):
    layer = layers.InstanceNormalization(center=False, scale=False)
    out = layer(feature_maps).numpy()
    assert layer.weights == []
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-3)


def make_cin(feature_maps, rng, num_styles=3):
    layer = layers.ConditionalInstanceNormalization(num_styles)
    layer.build([feature_maps.shape, (None, num_styles)])
    gammas = rng.normal(size=(num_styles, 4)).astype(np.float32)
    betas = rng.normal(size=(num_styles, 4)).astype(np.float32)
    layer.set_weights(list(gammas) + list(betas))
    return layer, gammas, betas


def test_conditional_instance_norm_one_hot_equals_that_styles_instance_norm(feature_maps, rng):
    layer, gammas, betas = make_cin(feature_maps, rng)
    styles = np.array([2, 0, 1])
    one_hot = np.eye(3, dtype=np.float32)[styles]
    expected = ops.instance_norm_affine(feature_maps, gammas[styles], betas[styles], 1e-5)
    np.testing.assert_allclose(layer([feature_maps, one_hot]), expected, atol=2e-5)


def test_conditional_instance_norm_is_linear_in_the_style_weights(feature_maps, rng):
    layer, _, _ = make_cin(feature_maps, rng)
    w1 = np.tile(np.float32([[1, 0, 0]]), (3, 1))
    w2 = np.tile(np.float32([[0, 0, 1]]), (3, 1))
    mix = 0.3 * w1 + 0.7 * w2
    out = layer([feature_maps, mix]).numpy()
    mixed = 0.3 * layer([feature_maps, w1]).numpy() + 0.7 * layer([feature_maps, w2]).numpy()
    np.testing.assert_allclose(out, mixed, atol=1e-4)
    assert not np.allclose(out, layer([feature_maps, w1]).numpy(), atol=1e-2)


def test_conditional_instance_norm_style_variables(feature_maps, rng):
    layer, gammas, _ = make_cin(feature_maps, rng)
    selected = layer.style_variables([1])
    assert len(selected) == 2
    np.testing.assert_array_equal(selected[0].numpy(), gammas[1])


@pytest.mark.parametrize("padding", [1, (2, 3), ((1, 2), (3, 0))])
def test_reflection_padding_matches_numpy_reflect(feature_maps, padding):
    layer = layers.ReflectionPadding2D(padding)
    (top, bottom), (left, right) = layer.padding
    expected = np.pad(feature_maps, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="reflect")
    out = layer(feature_maps)
    np.testing.assert_array_equal(out, expected)
    assert tuple(layer.compute_output_shape(feature_maps.shape)) == expected.shape


def test_upsample_conv_shape_and_equivalence(feature_maps):
    layer = layers.UpsampleConv2D(6, 3, scale=2)
    out = layer(feature_maps)
    assert out.shape == (3, 14, 10, 6)
    upsampled = feature_maps.repeat(2, axis=1).repeat(2, axis=2)
    padded = np.pad(upsampled, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    kernel, bias = layer.get_weights()
    expected = tf.nn.conv2d(padded, kernel, 1, "VALID") + bias
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("strides", [1, 2])
def test_reflect_conv_keeps_same_padding_size(strides):
    out = layers.ReflectConv2D(2, 3, strides=strides)(np.zeros((1, 9, 8, 3), np.float32))
    assert out.shape == (1, -(-9 // strides), -(-8 // strides), 2)


def test_residual_block_keeps_shape_and_is_identity_plus_branch(feature_maps):
    block = layers.ResidualBlock(4)
    out = block(feature_maps).numpy()
    assert out.shape == feature_maps.shape
    branch = block.block2(block.block1(feature_maps)).numpy()
    np.testing.assert_allclose(out, feature_maps + branch, atol=1e-5)


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
def test_layer_config_round_trip(make, apply, feature_maps, rng, tmp_path):
    layer = make()
    out = apply(layer, feature_maps)
    for v in layer.weights:  # make gamma/beta non-trivial so a lost weight shows
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    out = apply(layer, feature_maps).numpy()

    clone = type(layer).from_config(layer.get_config())
    apply(clone, feature_maps)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(apply(clone, feature_maps), out)

    inputs = keras.Input((7, 5, 4))
    if getattr(layer, "num_styles", 0):
        weights_in = keras.Input((2,))
        model = keras.Model([inputs, weights_in], layer([inputs, weights_in]))
        args = [feature_maps, np.float32([[0.2, 0.8]] * 3)]
    else:
        model = keras.Model(inputs, layer(inputs))
        args = feature_maps
    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(args), out)


def test_narrow_output_reflect_conv_uses_row_convolution():
    assert isinstance(layers.ReflectConv2D(3, 9).conv, layers.NarrowConv2D)
    assert type(layers.ReflectConv2D(32, 9).conv) is keras.layers.Conv2D
    with pytest.raises(ValueError):
        layers.NarrowConv2D(3, 9, strides=2)


STRIDED_CASES = [
    (layers.StridedConv2D, keras.layers.Conv2D),
    (layers.StridedConv2DTranspose, keras.layers.Conv2DTranspose),
]


@pytest.mark.parametrize("ours, keras_class", STRIDED_CASES)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kernel_size, strides", [(3, 2), (4, 2), (3, (2, 3))])
@pytest.mark.parametrize("shape", [(2, 9, 12, 3), (1, 8, 8, 4), (1, 7, 5, 2)])
def test_strided_convolutions_match_keras_values_and_gradients(
    rng, ours, keras_class, padding, kernel_size, strides, shape
):
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
def test_upsample_block_space_to_depth_output_is_its_output_before_depth_to_space(feature_maps, rng, num_styles):
    block = layers.ConvBlock(6, 3, upsample=2, num_styles=num_styles)
    inputs = [feature_maps, np.float32([[0.3, 0.7]] * 3)] if num_styles else feature_maps
    block(inputs)
    for variable in block.norm.trainable_variables:
        variable.assign(rng.normal(size=variable.shape).astype(np.float32))
    out = block(inputs)
    assert out.shape == (3, 14, 10, 6)
    np.testing.assert_allclose(tf.nn.depth_to_space(block(inputs, space_to_depth_out=True), 2), out, atol=1e-6)
    # The norm's statistics are the fine image's, as with the plain upsample-conv and norm.
    upsampled = tf.nn.conv2d(
        ops.reflection_pad(ops.upsample_nearest(feature_maps, 2), ((1, 1), (1, 1))), block.conv.conv.kernel, 1, "VALID"
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
