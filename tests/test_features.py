"""Feature extractor registry, layer selection, pooling swap and preprocessing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf import features
from nst_tf.errors import NSTError


def test_vgg19_has_sixteen_indexable_conv_layers():
    layers = features.EXTRACTORS["vgg19"].selectable_layers
    assert len(layers) == 16
    assert layers[0] == "block1_conv1" and layers[15] == "block5_conv4"
    assert len(features.EXTRACTORS["vgg16"].selectable_layers) == 13


def test_resolve_layers_by_name_and_index():
    got = features.resolve_layers("vgg19", [0, "3", "block4_conv2", " 15 "])
    assert got == ["block1_conv1", "block2_conv2", "block4_conv2", "block5_conv4"]
    with pytest.raises(NSTError, match="out of range"):
        features.resolve_layers("vgg19", [16])
    with pytest.raises(NSTError, match="unknown extractor"):
        features.resolve_layers("alexnet", [0])


def test_extractor_returns_named_maps_and_is_truncated():
    model = features.build_feature_extractor("vgg19", [0, "block2_conv1"], weights=None)
    out = model(np.zeros((2, 40, 36, 3), np.float32))
    assert set(out) == {"block1_conv1", "block2_conv1"}
    assert out["block1_conv1"].shape == (2, 40, 36, 64)
    assert out["block2_conv1"].shape == (2, 20, 18, 128)
    conv_layers = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert conv_layers == ["block1_conv1", "block1_conv2", "block2_conv1"]
    assert not model.trainable and not model.trainable_weights


def test_bfloat16_extractor_matches_float32_and_restores_the_policy():
    layers = ["block1_conv1", "block3_conv1"]
    exact = features.build_feature_extractor("vgg16", layers, weights=None)
    fast = features.build_feature_extractor("vgg16", layers, weights=None, precision="bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert all(w.dtype == "float32" for w in fast.weights)
    fast.set_weights(exact.get_weights())
    images = tf.constant(np.random.default_rng(0).random((1, 32, 40, 3)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        want, got = exact(images), fast(images)
        want_sum, got_sum = (tf.reduce_sum(tf.cast(o["block3_conv1"], tf.float32)) for o in (want, got))
    for name in layers:
        assert got[name].dtype == tf.bfloat16
        error = tf.norm(tf.cast(got[name], tf.float32) - want[name]) / tf.norm(want[name])
        assert float(error) < 0.02, name  # bfloat16 keeps 8 significant bits
    gradient = tape.gradient(got_sum, images)
    assert gradient.dtype == tf.float32
    cosine = tf.reduce_sum(gradient * tape.gradient(want_sum, images)) / (
        tf.norm(gradient) * tf.norm(tape.gradient(want_sum, images))
    )
    assert float(cosine) > 0.99


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(NSTError, match="--precision: must be one of float32, bfloat16, float16"):
        features.build_feature_extractor("vgg16", [0], weights=None, precision="int8")


def test_unknown_layer_name_is_a_clear_error():
    with pytest.raises(NSTError, match="no layer 'block9_conv1'"):
        features.build_feature_extractor("vgg16", ["block9_conv1"], weights=None)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(NSTError, match="no such file"):
        features.build_feature_extractor("vgg16", weights=str(tmp_path / "nope.h5"))


def test_avg_pooling_keeps_conv_weights():
    keras.utils.set_random_seed(1)
    layers = ["block1_conv1", "block3_conv1"]
    max_model = features.build_feature_extractor("vgg16", layers, weights=None, pooling="max")
    weights = max_model.get_weights()
    keras.utils.set_random_seed(2)
    avg_model = features.build_feature_extractor("vgg16", layers, weights=None, pooling="avg")
    avg_model.set_weights(weights)
    kinds = {type(layer).__name__ for layer in avg_model.layers}
    assert "AveragePooling2D" in kinds and "MaxPooling2D" not in kinds
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    a, m = avg_model(x), max_model(x)
    np.testing.assert_allclose(a["block1_conv1"], m["block1_conv1"], rtol=1e-5, atol=1e-4)
    assert not np.allclose(a["block3_conv1"], m["block3_conv1"])


def test_avg_pooling_swap_on_real_weights_keeps_them(hed_weights):
    model = features.build_feature_extractor("vgg16", ["block2_conv1"], weights=hed_weights, pooling="avg")
    reference = keras.applications.VGG16(include_top=False, weights=hed_weights)
    np.testing.assert_array_equal(
        model.get_layer("block2_conv1").get_weights()[0],
        reference.get_layer("block2_conv1").get_weights()[0],
    )


def test_preprocessing_is_caffe_bgr_mean_subtraction():
    x = np.random.default_rng(0).random((1, 4, 4, 3)).astype(np.float32)
    got = features.CaffePreprocess()(x).numpy()
    expected = keras.applications.vgg19.preprocess_input(x * 255.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_resnet50_stage_outputs():
    model = features.build_feature_extractor("resnet50", [0, "conv3_block4_out"], weights=None)
    out = model(np.zeros((1, 64, 64, 3), np.float32))
    assert out["conv1_relu"].shape == (1, 32, 32, 64)
    assert out["conv3_block4_out"].shape == (1, 8, 8, 512)
    with pytest.raises(NSTError, match="only supported for VGG"):
        features.build_feature_extractor("resnet50", weights=None, pooling="avg")


def test_extractor_works_in_tf_function_with_dynamic_size():
    model = features.build_feature_extractor("vgg16", ["block1_conv2"], weights=None)
    fn = tf.function(lambda x: model(x)["block1_conv2"], input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert fn(tf.zeros((1, 33, 47, 3))).shape == (1, 33, 47, 64)


def test_default_layers_are_the_papers():
    content, style = features.default_layers("vgg19")
    assert content == ["block4_conv2"]
    assert style == [f"block{i}_conv1" for i in range(1, 6)]


def test_extractor_saves_and_reloads(tmp_path):
    model = features.build_feature_extractor("vgg16", ["block1_conv1"], weights=None)
    path = str(tmp_path / "f.keras")
    model.save(path)
    again = keras.models.load_model(path)
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(again(x)["block1_conv1"], model(x)["block1_conv1"], rtol=1e-6)
