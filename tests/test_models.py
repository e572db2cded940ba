"""TransformNet / MultiStyleNet: any-size I/O, range, saving, expand(), width multiplier."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf.models import MODEL_CLASSES
from nst_tf.models import MultiStyleNet
from nst_tf.models import TransformNet
from nst_tf.models import crop_to
from nst_tf.models import pad_to_multiple

WIDTH = 0.125  # 4..16 channels: fast, but every layer is exercised


@pytest.fixture(scope="module")
def net():
    return TransformNet(width=WIDTH, num_residual_blocks=2)


@pytest.fixture(scope="module")
def multi():
    return MultiStyleNet(3, width=WIDTH, num_residual_blocks=2)


def randomize_norms(model, seed=0):
    """Give every gamma/beta a distinct value, so styles differ from the fresh-init identity."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "gamma" in v.path or "beta" in v.path:
            v.assign(rng.normal(1.0 if "gamma" in v.path else 0.0, 0.5, size=v.shape).astype(np.float32))


def images(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("hw", [(33, 47), (32, 32), (5, 9), (64, 21)])
def test_transform_net_output_size_equals_input_size_and_range(net, hw):
    out = net(images((2, *hw, 3))).numpy()
    assert out.shape == (2, *hw, 3)
    assert out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_pad_to_multiple_and_crop_keep_pixels_in_place():
    x = images((1, 33, 47, 3))
    padded, size = pad_to_multiple(tf.constant(x), 4)
    assert padded.shape == (1, 36, 48, 3)
    np.testing.assert_array_equal(padded[:, :33, :47], x)
    np.testing.assert_array_equal(padded, np.pad(x, ((0, 0), (0, 3), (0, 1), (0, 0)), mode="reflect"))
    np.testing.assert_array_equal(crop_to(padded, size), x)


def test_odd_sizes_are_not_shifted(net):
    # The odd-size output must be the top-left window of the output for the padded image;
    # a one-pixel shift would change almost every pixel of the window.
    x = images((1, 33, 47, 3))
    padded = np.pad(x, ((0, 0), (0, 3), (0, 1), (0, 0)), mode="reflect")
    out = net(x).numpy()
    np.testing.assert_allclose(out, net(padded).numpy()[:, :33, :47], atol=1e-6)
    assert np.abs(out[:, 1:, 1:] - net(padded).numpy()[:, :32, :46]).max() > 1e-3


def test_dynamic_sizes_inside_tf_function(net, multi):
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    serve = tf.function(lambda x: net(x), input_signature=[spec])
    serve_multi = tf.function(lambda x, w: multi((x, w)), input_signature=[spec, tf.TensorSpec([None, 3], tf.float32)])
    for shape in [(1, 33, 47, 3), (2, 16, 24, 3)]:
        x = images(shape)
        # Graph mode fuses each ReLU into its batch-norm kernel, which rounds differently.
        np.testing.assert_allclose(serve(x), net(x), atol=1e-5)
        w = np.eye(3, dtype=np.float32)[[1] * shape[0]]
        assert serve_multi(x, w).shape == shape


def test_width_multiplier_reduces_parameters():
    full = TransformNet().count_params()
    half = TransformNet(width=0.5).count_params()
    assert 1.6e6 < full < 1.7e6  # Johnson's net: about 1.68 M parameters
    assert half < full / 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransformNet(width=WIDTH, num_residual_blocks=1),
        lambda: MultiStyleNet(2, width=WIDTH, num_residual_blocks=1),
    ],
)
def test_keras_save_load_and_config_round_trip(make, tmp_path):
    model = make()
    randomize_norms(model)
    x = images((2, 20, 28, 3))
    args = (x, np.float32([0.25, 0.75])) if isinstance(model, MultiStyleNet) else x
    out = model(args).numpy()

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded(args), out)

    config = model.get_config()
    clone = MODEL_CLASSES[type(model).__name__].from_config(config)
    tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=clone).read(str(tmp_path / "ckpt")).assert_consumed()
    np.testing.assert_array_equal(clone(args), out)


def test_multistyle_weights_shapes_and_mixing(multi):
    randomize_norms(multi, seed=1)
    x = images((2, 24, 20, 3))
    one_hot = np.eye(3, dtype=np.float32)
    per_image = multi((x, one_hot[[0, 2]])).numpy()
    np.testing.assert_allclose(per_image[:1], multi((x[:1], one_hot[0])).numpy(), atol=1e-6)
    np.testing.assert_allclose(per_image[1:], multi((x[1:], one_hot[2])).numpy(), atol=1e-6)
    assert np.abs(per_image[0] - multi((x[:1], one_hot[2])).numpy()[0]).mean() > 1e-3
    mixed = multi((x, np.float32([0.5, 0, 0.5]))).numpy()
    assert mixed.shape == x.shape and 0 <= mixed.min() and mixed.max() <= 1


def test_expand_keeps_old_styles_bit_identical(multi):
    randomize_norms(multi, seed=2)
    expanded = multi.expand(2)
    assert expanded.num_styles == 5
    x = images((2, 18, 26, 3))
    old = np.eye(3, dtype=np.float32)
    new = np.eye(5, dtype=np.float32)
    for i in range(3):
        np.testing.assert_array_equal(expanded((x, new[i])), multi((x, old[i])))

    # Training only the new styles' variables cannot move the old ones.
    trainable = expanded.style_variables([3, 4])
    assert len(trainable) == 2 * 2 * 9  # (gamma, beta) x 2 styles x 9 norm layers
    trunk_and_old = {id(v) for v in expanded.trunk_variables + expanded.style_variables([0, 1, 2])}
    assert not trunk_and_old & {id(v) for v in trainable}
    assert len(trunk_and_old) + len(trainable) == len(expanded.variables)
    optimizer = keras.optimizers.Adam(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(expanded((x, new[3])) + expanded((x, np.float32([0.5, 0, 0, 0, 0.5]))))
    optimizer.apply_gradients(zip(tape.gradient(loss, trainable), trainable))
    for i in range(3):
        np.testing.assert_array_equal(expanded((x, new[i])), multi((x, old[i])))
    assert np.abs(expanded((x, new[3])).numpy() - multi((x, np.full(3, 1 / 3, np.float32))).numpy()).max() > 1e-4


def test_expand_starts_new_style_at_mean_of_old(multi):
    randomize_norms(multi, seed=3)
    expanded = multi.expand(1)
    x = images((1, 16, 16, 3))
    np.testing.assert_allclose(
        expanded((x, np.eye(4, dtype=np.float32)[3])), multi((x, np.full(3, 1 / 3, np.float32))), atol=1e-5
    )


def test_invalid_arguments():
    with pytest.raises(ValueError):
        MultiStyleNet(0)
    with pytest.raises(ValueError):
        TransformNet(width=0)
    with pytest.raises(ValueError):
        MultiStyleNet(2, width=WIDTH, num_residual_blocks=1).style_variables([2])
