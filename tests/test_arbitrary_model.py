"""AdaIN's model (nst_tf.models.arbitrary): the decoder's shape, the inference controls and style vectors,
on random VGG weights and tiny images."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf.errors import NSTError
from nst_tf.models import arbitrary
from nst_tf.models.arbitrary import ArbitraryStyleNet
from nst_tf.models.arbitrary import StyleVector


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    return ArbitraryStyleNet("vgg16", weights=None, width=0.25)


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(5)
    return {
        "content": rng.random((2, 40, 48, 3)).astype(np.float32),
        "style_a": rng.random((1, 56, 40, 3)).astype(np.float32) * [1.0, 0.4, 0.2],
        "style_b": rng.random((1, 48, 64, 3)).astype(np.float32) * [0.2, 0.5, 1.0],
    }


def test_the_decoder_mirrors_the_encoder_up_to_relu4_1():
    vgg19 = ArbitraryStyleNet("vgg19", weights=None)
    # Huang & Belongie's decoder: 512 -> 256, up, 256 x3, 128, up, 128, 64, up, 64, 3.
    assert vgg19.decoder.stages == ((256,), (256, 256, 256, 128), (128, 64), (64, 3))
    assert vgg19.decoder.input_channels == 512 and vgg19.size_multiple == 8 and vgg19.min_side == 16
    vgg16 = ArbitraryStyleNet("vgg16", weights=None, layer="block3_conv1", width=0.5)
    assert vgg16.decoder.stages == ((64,), (64, 32), (32, 3)) and vgg16.decoder.input_channels == 256
    # Only the decoder trains: the encoder is frozen.
    assert {id(v) for v in vgg19.trainable_variables} == {id(v) for v in vgg19.decoder.trainable_variables}
    with pytest.raises(NSTError, match="^--feature_extractor: arbitrary style needs a VGG encoder"):
        ArbitraryStyleNet("resnet50", weights=None)
    with pytest.raises(NSTError, match="^--content_layers: the encoder ends at a conv layer, and 'block3_pool'"):
        ArbitraryStyleNet("vgg16", layer="block3_pool", weights=None)


@pytest.mark.parametrize("size", [(16, 16), (17, 23), (37, 45), (50, 33), (64, 72)])
def test_odd_sizes_come_back_unchanged(model, pictures, size):
    rng = np.random.default_rng(sum(size))
    content = rng.random((1, *size, 3)).astype(np.float32)
    out = model.stylize(content, model.style_vector(pictures["style_a"]))
    assert out.shape == (1, *size, 3)
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0


def test_a_padded_size_is_the_cropped_output_of_the_padded_image(model, pictures):
    """Pad-and-crop: the bottom/right reflection pad and the crop do not shift the picture."""
    content = pictures["content"][:1, :37, :45]
    padded = np.pad(content, [(0, 0), (0, 3), (0, 3), (0, 0)], mode="reflect")
    style = model.style_vector(pictures["style_a"])
    np.testing.assert_allclose(model.stylize(content, style), model.stylize(padded, style)[:, :37, :45], atol=1e-5)


def test_alpha_zero_returns_the_decoded_content(model, pictures):
    content = pictures["content"]
    style = model.style_vector(pictures["style_a"])
    decoded = tf.clip_by_value(model.decode(model.encode(content)), 0.0, 1.0)
    np.testing.assert_allclose(model.stylize(content, style, alpha=0.0), decoded, atol=1e-6)
    styled = model.stylize(content, style, alpha=1.0)
    assert np.abs(styled - decoded).mean() > 1e-3  # the style does change the picture
    half = model.transfer(model.encode(content), style, alpha=0.5)
    full = model.transfer(model.encode(content), style)
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * model.encode(content), atol=1e-5)


def test_two_styles_with_weights_one_and_zero_equal_the_one_style(model, pictures):
    one = model.style_vector(pictures["style_a"])
    both = StyleVector.concat([one, model.style_vector(pictures["style_b"])])
    content = pictures["content"]
    np.testing.assert_array_equal(model.stylize(content, both.blend([1.0, 0.0])), model.stylize(content, one))
    # Not bit for bit: the two calls reach the decoder by different op sequences, which
    # agree exactly with AVX-512 kernels and to within 3e-7 on an AVX2-only CPU.
    np.testing.assert_allclose(
        model.stylize(content, both.blend([0.0, 2.0]))[0],
        model((content[:1], pictures["style_b"]))[0],
        rtol=0,
        atol=1e-6,
    )


def test_blending_vectors_is_interpolating_adain_outputs(model, pictures):
    """AdaIN's Torch code interpolates the AdaIN outputs; averaging the statistics is the same."""
    vectors = [model.style_vector(pictures[name]) for name in ("style_a", "style_b")]
    features = model.encode(pictures["content"])
    mixed = model.transfer(features, StyleVector.concat(vectors).blend([1.0, 3.0]))
    interpolated = 0.25 * model.transfer(features, vectors[0]) + 0.75 * model.transfer(features, vectors[1])
    np.testing.assert_allclose(mixed, interpolated, rtol=1e-4, atol=1e-4)


def test_a_saved_style_vector_gives_the_same_image_as_the_painting(model, pictures, tmp_path):
    vector = model.style_vector(pictures["style_a"])
    path = tmp_path / "monet.npz"
    vector.save(path, model.encoder_id)
    loaded = StyleVector.load(path, model.encoder_id)
    assert loaded.mean.shape == (1, 512 // 1) and loaded.to_tensor().shape == (1, 1024)
    content = pictures["content"]
    np.testing.assert_array_equal(model.stylize(content, loaded), model((content, pictures["style_a"])))
    packed = StyleVector.from_tensor(vector.to_tensor()[0])
    np.testing.assert_array_equal(packed.mean, vector.mean)
    np.testing.assert_array_equal(packed.std, vector.std)

    other = ArbitraryStyleNet("vgg16", weights=None, width=0.25)  # other (random) encoder weights
    with pytest.raises(NSTError, match="monet.npz: a style vector of another encoder"):
        StyleVector.load(path, other.encoder_id)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(NSTError, match=r"broken.npz: not a style vector file \(\w+\)$"):
        StyleVector.load(tmp_path / "broken.npz")
    with pytest.raises(NSTError, match="nothing.npz: no such file"):
        StyleVector.load(tmp_path / "nothing.npz")


def test_a_mask_gives_each_region_its_style_with_the_regions_content_statistics(model, pictures):
    content = pictures["content"][:1]
    fg, bg = (model.style_vector(pictures[name]) for name in ("style_a", "style_b"))
    features = model.encode(content).numpy()
    mask = np.zeros(features.shape[:3] + (1,), np.float32)
    mask[:, :, : features.shape[2] // 2] = 1.0
    t = model.transfer(features, fg, mask=mask, background=bg).numpy()

    def region_adain(region, style):
        mean, std = region.mean(axis=(1, 2)), np.sqrt(region.var(axis=(1, 2)) + arbitrary.EPSILON)
        return style.std.numpy() * (region - mean[:, None, None]) / std[:, None, None] + style.mean.numpy()

    half = features.shape[2] // 2
    np.testing.assert_allclose(t[:, :, :half], region_adain(features[:, :, :half], fg), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(t[:, :, half:], region_adain(features[:, :, half:], bg), rtol=1e-4, atol=1e-3)

    # At the image's size: an all-ones mask is the foreground style alone.
    ones = np.ones(content.shape[:3] + (1,), np.float32)
    np.testing.assert_allclose(
        model.stylize(content, fg, mask=ones, background=bg), model.stylize(content, fg), atol=1e-5
    )
    with pytest.raises(ValueError, match="background"):
        model.transfer(features, fg, mask=mask)


def test_the_model_runs_in_a_tf_function_with_dynamic_sizes(model, pictures):
    stylize = tf.function(
        lambda content, packed, alpha: model.stylize(content, StyleVector.from_tensor(packed), alpha),
        input_signature=[
            tf.TensorSpec([None, None, None, 3]),
            tf.TensorSpec([None, 1024]),
            tf.TensorSpec([]),
        ],
    )
    vector = model.style_vector(pictures["style_a"])
    for size in ((40, 48), (21, 35)):
        content = pictures["content"][:1, : size[0], : size[1]]
        np.testing.assert_allclose(
            stylize(content, vector.to_tensor(), 0.7), model.stylize(content, vector, 0.7), atol=1e-5
        )


def test_the_config_and_a_checkpoint_rebuild_the_whole_model(model, pictures, tmp_path):
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    rebuilt = ArbitraryStyleNet.from_config(model.get_config())
    assert rebuilt.encoder_id != model.encoder_id  # random encoder until restored
    tf.train.Checkpoint(model=rebuilt).restore(path).assert_existing_objects_matched()
    assert rebuilt.encoder_id == model.encoder_id  # the checkpoint holds the encoder's weights
    content, style = pictures["content"], pictures["style_b"]
    np.testing.assert_array_equal(rebuilt((content, style)), model((content, style)))
