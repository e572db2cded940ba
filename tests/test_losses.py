"""Every loss formula against a direct NumPy transcription of the paper's equation."""

import numpy as np
import pytest
import tensorflow as tf

from nst_tf import features
from nst_tf import losses
from nst_tf.errors import NSTError


@pytest.fixture
def feats(rng):
    return rng.standard_normal((2, 5, 7, 4)).astype(np.float32)


def np_sum_gram(f):
    """G_ij = sum_k F_ik F_jk with F the C x (H W) matrix of one image (Gatys et al. eq. 3)."""
    b, h, w, c = f.shape
    flat = f.reshape(b, h * w, c).transpose(0, 2, 1).astype(np.float64)  # [B, C, M]
    return np.einsum("bik,bjk->bij", flat, flat)


def np_gram(f):
    """The per-position Gram G / M."""
    return np_sum_gram(f) / (f.shape[1] * f.shape[2])


@pytest.mark.parametrize("batch", [1, 2])
def test_gram_matrix_is_per_position(feats, batch):
    got = losses.gram_matrix(feats[:batch]).numpy()
    np.testing.assert_allclose(got, np_gram(feats[:batch]), rtol=1e-5, atol=1e-6)


def test_gram_matrix_gradient_matches_autodiff_of_the_product(feats):
    weights = tf.constant(np.random.default_rng(3).normal(size=(feats.shape[0], 4, 4)).astype(np.float32))
    x = tf.constant(feats)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        flat = tf.reshape(x, [x.shape[0], -1, x.shape[-1]])
        ours = tf.reduce_sum(losses.gram_matrix(x) * weights)
        plain = tf.reduce_sum(tf.matmul(flat, flat, transpose_a=True) / flat.shape[1] * weights)
    np.testing.assert_allclose(tape.gradient(ours, x), tape.gradient(plain, x), rtol=1e-4, atol=1e-4)


def test_gram_matrix_dynamic_shape_in_tf_function(feats):
    fn = tf.function(losses.gram_matrix, input_signature=[tf.TensorSpec([None, None, None, 4])])
    np.testing.assert_allclose(fn(feats).numpy(), np_gram(feats), rtol=1e-5, atol=1e-6)


def test_content_loss_sum_is_half_sum_of_squares(feats, rng):
    target = rng.standard_normal(feats.shape).astype(np.float32)
    expected = np.mean([0.5 * np.sum((f - p) ** 2) for f, p in zip(feats, target)])
    np.testing.assert_allclose(losses.content_loss(feats, target).numpy(), expected, rtol=1e-5)


def test_content_loss_mean_variant(feats, rng):
    target = rng.standard_normal(feats.shape).astype(np.float32)
    expected = np.mean((feats - target) ** 2)
    got = losses.content_loss(feats, target, reduction="mean").numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_content_loss_rejects_unknown_reduction(feats):
    with pytest.raises(ValueError):
        losses.content_loss(feats, feats, reduction="max")


def test_style_layer_loss_in_gatys_units_is_eq4_at_equal_sizes(feats, rng):
    style = rng.standard_normal((1,) + feats.shape[1:]).astype(np.float32)
    _, h, w, c = feats.shape
    a, g = np_sum_gram(style), np_sum_gram(feats)  # un-normalised, over the same M positions
    expected = np.mean([np.sum((gi - a[0]) ** 2) for gi in g]) / (4 * c**2 * (h * w) ** 2)
    scale = losses.style_layer_scale("gatys", c)
    assert scale == 1 / (4 * c**2)
    got = losses.style_layer_loss(feats, np_gram(style).astype(np.float32), scale).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_style_layer_loss_in_johnson_units_is_his_normalised_gram_over_c2(feats, rng):
    style = rng.standard_normal((1, 9, 3, 4)).astype(np.float32)  # any size: Grams per position
    _, h, w, c = feats.shape
    target = np_sum_gram(style) / (9 * 3 * c)  # Johnson et al. eq. (3): G / (C H W)
    g = np_sum_gram(feats) / (h * w * c)
    expected = np.mean([np.sum((gi - target[0]) ** 2) for gi in g]) / c**2
    scale = losses.style_layer_scale("johnson", c)
    got = losses.style_layer_loss(feats, np_gram(style).astype(np.float32), scale).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def layer_dicts(rng, shapes, batch=1):
    return {name: rng.standard_normal((batch,) + shape).astype(np.float32) for name, shape in shapes.items()}


def test_style_loss_weights_layers_and_reports_each(rng):
    shapes = {"a": (6, 6, 3), "b": (3, 3, 5)}
    f, s = layer_dicts(rng, shapes), layer_dicts(rng, shapes)
    for units, default in (("gatys", 0.5), ("johnson", 1.0)):
        style = losses.StyleLoss(["a", "b"], units=units)
        targets = style.target([s])
        total, per_layer = style(f, targets)
        expected = {
            n: losses.style_layer_scale(units, shapes[n][-1]) * np.sum((np_gram(f[n]) - np_gram(s[n])) ** 2)
            for n in shapes
        }
        for name in shapes:
            np.testing.assert_allclose(per_layer[name].numpy(), expected[name], rtol=1e-5)
        np.testing.assert_allclose(total.numpy(), default * sum(expected.values()), rtol=1e-5)
    weighted, per_layer = losses.StyleLoss(["a", "b"], [2.0, 0.0])(f, targets)
    np.testing.assert_allclose(weighted.numpy(), 2.0 * per_layer["a"].numpy(), rtol=1e-6)


def test_style_targets_blend_or_stack_and_batches_gather_their_style(rng):
    shapes = {"a": (5, 4, 3)}
    styles = [layer_dicts(rng, {"a": (h, w, 3)}) for h, w in ((5, 4), (8, 6), (3, 9))]
    style = losses.StyleLoss(["a"])
    grams = [np_gram(s["a"])[0] for s in styles]
    blended = style.target(styles[:2], [1.0, 3.0])["a"].numpy()
    assert blended.shape == (1, 3, 3)
    np.testing.assert_allclose(blended[0], 0.25 * grams[0] + 0.75 * grams[1], rtol=1e-5)
    with pytest.raises(ValueError):
        style.target(styles, [1.0])
    stacked = style.target(styles)
    np.testing.assert_allclose(stacked["a"].numpy(), np.stack(grams), rtol=1e-5)
    # Each image of a batch against its own style = the mean of one-image losses.
    f = layer_dicts(rng, shapes, batch=3)
    index = np.array([2, 0, 2], np.int32)
    got, _ = style(f, stacked, style_index=index)
    one_by_one = [style({"a": f["a"][i : i + 1]}, style.target([styles[k]]))[0].numpy() for i, k in enumerate(index)]
    np.testing.assert_allclose(got.numpy(), np.mean(one_by_one), rtol=1e-5)


def test_content_loss_object_sums_weighted_layers(rng):
    shapes = {"a": (4, 4, 3), "b": (2, 2, 5)}
    f, p = layer_dicts(rng, shapes, batch=2), layer_dicts(rng, shapes, batch=2)
    total, per_layer = losses.ContentLoss(["a", "b"], [1.0, 3.0], reduction="mean")(f, p)
    for name in shapes:
        np.testing.assert_allclose(per_layer[name].numpy(), np.mean((f[name] - p[name]) ** 2), rtol=1e-5)
    np.testing.assert_allclose(total.numpy(), per_layer["a"].numpy() + 3 * per_layer["b"].numpy(), rtol=1e-6)


def test_total_variation_sum_and_mean(rng):
    x = rng.random((2, 6, 5, 3)).astype(np.float32)
    dy = (x[:, 1:] - x[:, :-1]) ** 2
    dx = (x[:, :, 1:] - x[:, :, :-1]) ** 2
    expected_sum = np.mean(dy.sum(axis=(1, 2, 3)) + dx.sum(axis=(1, 2, 3)))
    expected_mean = np.mean(dy.mean(axis=(1, 2, 3)) + dx.mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(losses.total_variation_loss(x).numpy(), expected_sum, rtol=1e-5)
    got = losses.total_variation_loss(x, reduction="mean").numpy()
    np.testing.assert_allclose(got, expected_mean, rtol=1e-5)
    assert losses.total_variation_loss(np.ones((1, 8, 8, 3), np.float32)).numpy() == 0.0


def np_laplacian(x, p):
    b, h, w, c = x.shape
    pooled = x[:, : h // p * p, : w // p * p].reshape(b, h // p, p, w // p, p, c).mean(axis=(2, 4))
    return (
        4 * pooled[:, 1:-1, 1:-1]
        - pooled[:, :-2, 1:-1]
        - pooled[:, 2:, 1:-1]
        - pooled[:, 1:-1, :-2]
        - pooled[:, 1:-1, 2:]
    )


def test_laplacian_loss_is_li_eq2(rng):
    x = rng.random((1, 24, 20, 3)).astype(np.float32)
    c = rng.random((1, 24, 20, 3)).astype(np.float32)
    expected = np.sum((np_laplacian(c, 4) - np_laplacian(x, 4)) ** 2)
    np.testing.assert_allclose(losses.laplacian_loss(x, c).numpy(), expected, rtol=1e-4)
    assert losses.laplacian_loss(c, c).numpy() == 0.0


def test_pixel_loss_is_the_mean_squared_error(rng):
    x, c = rng.random((2, 2, 6, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.pixel_loss(x, c).numpy(), np.mean((x - c) ** 2), rtol=1e-5)


def test_losses_are_float32_under_float16_features(feats):
    half = tf.cast(feats, tf.float16)
    assert losses.gram_matrix(half).dtype == tf.float32
    assert losses.content_loss(half, half).dtype == tf.float32


# --------------------------------------------------------------------------- PerceptualLoss


# Gatys' and Johnson's layers of a random-weight VGG16, built once.
PIN_LAYERS = [
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv3",
    "block4_conv3",
]


@pytest.fixture(scope="module")
def vgg16():
    return features.build_feature_extractor("vgg16", PIN_LAYERS, weights=None)


def periodic_texture(rng, height, width):
    """Smooth sinusoids with whole periods across the image, so 2x2 tiles join seamlessly."""
    y, x = np.mgrid[0:height, 0:width]
    channels = [
        0.5 + 0.4 * np.sin(2 * np.pi * (kx * x / width + ky * y / height) + phase)
        for kx, ky, phase in zip(rng.integers(1, 4, 3), rng.integers(1, 4, 3), rng.uniform(0, 6, 3))
    ]
    return np.stack(channels, -1).astype(np.float32)


@pytest.mark.parametrize("units", losses.UNITS)
@pytest.mark.parametrize("tile", [(64, 64), (48, 80)])
def test_style_loss_of_a_texture_against_its_2x2_tiling_is_near_zero(vgg16, units, tile):
    """Per-position Grams: the style loss does not depend on how many positions either side
    has, so a texture and its 2x2 tiling (twice the sides) have almost the same Grams, the
    zero-padded border aside. With un-normalised Grams the tiling's would be 4x the tile's."""
    rng = np.random.default_rng(sum(tile))
    config = losses.LossConfig(
        style_layers=("block1_conv1", "block2_conv1", "block3_conv1"),
        content_layers=("block1_conv1",),
        units=units,
        weights=None,
        feature_extractor="vgg16",
    )
    loss = losses.PerceptualLoss(config, vgg16)
    texture = periodic_texture(rng, *tile)
    tiled = np.tile(texture, (2, 2, 1))

    def style_term(image, style):
        content = loss.content_target(image)
        return float(loss(image[None], content, loss.style_target([style], [1.0]))[1]["style"])

    unrelated = periodic_texture(rng, *tiled.shape[:2])
    # Output larger than the style image, and the other way round.
    assert style_term(tiled, texture) < 0.02 * style_term(unrelated, texture)
    assert style_term(texture, tiled) < 0.02 * style_term(texture, unrelated)


def test_johnson_loss_is_his_formula(vgg16, rng):
    """LossConfig.johnson() on a batch is content MSE at relu2_2 + 5 * sum_j ||G_j(y) - G_j(y_s)||^2
    / C_j^2 with Grams normalised by C H W (a style image of another size) + 1e-6 * TV(255 y)."""
    loss = losses.PerceptualLoss(losses.LossConfig.johnson(weights=None), vgg16)
    photos = rng.random((2, 32, 40, 3)).astype(np.float32)
    outputs = rng.random((2, 32, 40, 3)).astype(np.float32)
    style = rng.random((48, 36, 3)).astype(np.float32)
    total, terms = loss(outputs, loss.content_target(photos), loss.style_target([style]), tf.zeros([2], tf.int32))

    f_out = {k: v.numpy() for k, v in vgg16(outputs).items()}
    f_photo = {k: v.numpy() for k, v in vgg16(photos).items()}
    f_style = {k: v.numpy() for k, v in vgg16(style[None]).items()}
    content = np.mean((f_out["block2_conv2"] - f_photo["block2_conv2"]) ** 2)
    style_value = 0.0
    for name in losses.JOHNSON_STYLE_LAYERS:
        _, h, w, c = f_out[name].shape
        g_out = np_sum_gram(f_out[name]) / (c * h * w)
        _, hs, ws, _ = f_style[name].shape
        g_style = np_sum_gram(f_style[name]) / (c * hs * ws)
        style_value += np.mean(np.sum((g_out - g_style) ** 2, axis=(1, 2))) / c**2
    y = outputs.astype(np.float64) * 255
    tv = np.mean(
        np.sum((y[:, 1:] - y[:, :-1]) ** 2, axis=(1, 2, 3)) + np.sum((y[:, :, 1:] - y[:, :, :-1]) ** 2, axis=(1, 2, 3))
    )
    np.testing.assert_allclose(terms["content"].numpy(), content, rtol=1e-4)
    np.testing.assert_allclose(terms["style"].numpy(), style_value, rtol=1e-4)
    np.testing.assert_allclose(terms["tv"].numpy(), tv, rtol=1e-4)
    np.testing.assert_allclose(total.numpy(), content + 5 * style_value + 1e-6 * tv, rtol=1e-4)


def test_terms_per_layer_and_optional_terms(vgg16, rng):
    config = losses.LossConfig(
        feature_extractor="vgg16",
        weights=None,
        content_layers=(0, 3),
        style_layers=("block1_conv1", "block2_conv1", "block3_conv1"),
        style_layer_weights=(1.0, 2.0, 0.5),
        laplacian_weight=0.1,
        pixel_weight=3.0,
        tv_weight=0.5,
    )
    loss = losses.PerceptualLoss(config, vgg16)
    content = rng.random((40, 32, 3)).astype(np.float32)
    image = rng.random((1, 40, 32, 3)).astype(np.float32)
    total, terms = loss(image, loss.content_target(content), loss.style_target([content[::2]], [1.0]))
    assert set(terms) == {
        "content",
        "style",
        "tv",
        "laplacian",
        "pixel",
        "content/block1_conv1",
        "content/block2_conv2",
        "style/block1_conv1",
        "style/block2_conv1",
        "style/block3_conv1",
    }
    per_layer = [terms[f"style/{name}"].numpy() for name in loss.style_layers]
    np.testing.assert_allclose(terms["style"].numpy(), np.dot([1.0, 2.0, 0.5], per_layer), rtol=1e-5)
    np.testing.assert_allclose(
        terms["content"].numpy(),
        terms["content/block1_conv1"].numpy() + terms["content/block2_conv2"].numpy(),
        rtol=1e-5,
    )
    np.testing.assert_allclose(terms["pixel"].numpy(), np.mean((image[0] - content) ** 2), rtol=1e-5)
    expected = (
        terms["content"] + 1e3 * terms["style"] + 0.5 * terms["tv"] + 0.1 * terms["laplacian"] + 3.0 * terms["pixel"]
    )
    np.testing.assert_allclose(total.numpy(), expected.numpy(), rtol=1e-5)
    _, plain = losses.PerceptualLoss(
        losses.LossConfig(feature_extractor="vgg16", weights=None, content_layers=(0,), style_layers=(0,)), vgg16
    )(image, loss.content_target(content), loss.style_target([content], [1.0]))
    assert set(plain) == {"content", "style", "tv", "content/block1_conv1", "style/block1_conv1"}


def test_loss_config_defaults_and_a_missing_extractor_layer(vgg16):
    johnson = losses.LossConfig.johnson()
    assert (
        johnson.feature_extractor,
        johnson.content_weight,
        johnson.style_weight,
        johnson.tv_weight,
        johnson.content_loss,
        johnson.units,
    ) == ("vgg16", 1.0, 5.0, 1e-6, "mean", "johnson")
    assert losses.LossConfig().layers() == (["block4_conv2"], [f"block{b}_conv1" for b in range(1, 6)])
    with pytest.raises(NSTError, match="no output 'block4_conv2'"):
        losses.PerceptualLoss(losses.LossConfig(feature_extractor="vgg16", weights=None), vgg16)


# --- Huang & Belongie (AdaIN): channel means and stds ---------------------------


def np_mean_std(f, eps=1e-5):
    """[B, 2, C]: per-channel mean and sqrt(biased variance + eps) over the positions."""
    f = f.astype(np.float64)
    return np.stack([f.mean(axis=(1, 2)), np.sqrt(f.var(axis=(1, 2)) + eps)], axis=1)


def test_mean_std_statistic_is_per_channel_over_positions(feats):
    np.testing.assert_allclose(losses.mean_std(feats).numpy(), np_mean_std(feats), rtol=1e-5, atol=1e-6)
    assert losses.STATISTICS["mean_std"] is losses.mean_std


def test_style_layer_loss_in_huang_units_is_mse_of_means_plus_mse_of_stds(feats, rng):
    style = (rng.standard_normal((2, 9, 3, 4)) * 3 + 1).astype(np.float32)  # one style per image, another size
    c = feats.shape[-1]
    target, ours = np_mean_std(style), np_mean_std(feats)
    expected = np.mean((ours[:, 0] - target[:, 0]) ** 2) + np.mean((ours[:, 1] - target[:, 1]) ** 2)
    scale = losses.style_layer_scale("huang", c)
    assert scale == 1 / c
    got = losses.style_layer_loss(feats, target.astype(np.float32), scale, statistic="mean_std").numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.fixture(scope="module")
def vgg16_huang():
    return features.build_feature_extractor("vgg16", losses.HUANG_STYLE_LAYERS, weights=None)


def test_huang_loss_is_adains_formula(vgg16_huang, rng):
    """LossConfig.huang() is AdaIN's training loss: MSE(f(g), t) at relu4_1 + 10 * sum over relu1_1 .. relu4_1
    of MSE(mu(f(g)), mu(f(s))) + MSE(sigma(f(g)), sigma(f(s))), each image against its own style."""
    config = losses.LossConfig.huang(feature_extractor="vgg16", weights=None)
    assert config.layers() == (["block4_conv1"], list(losses.HUANG_STYLE_LAYERS))
    loss = losses.PerceptualLoss(config, vgg16_huang)
    assert loss.style_loss.layer_weights == {name: 1.0 for name in losses.HUANG_STYLE_LAYERS}
    outputs = rng.random((2, 32, 40, 3)).astype(np.float32)
    styles = rng.random((2, 48, 40, 3)).astype(np.float32)
    t = rng.standard_normal((2, 4, 5, 512)).astype(np.float32)
    style_features = vgg16_huang(styles)
    target = losses.ContentTarget(outputs, {"block4_conv1": t})
    total, terms = loss(outputs, target, loss.style_loss.statistics(style_features))

    f_out = {k: v.numpy() for k, v in vgg16_huang(outputs).items()}
    content = np.mean((f_out["block4_conv1"] - t) ** 2)
    style_value = 0.0
    for name in losses.HUANG_STYLE_LAYERS:
        ours, theirs = np_mean_std(f_out[name]), np_mean_std(style_features[name].numpy())
        style_value += np.mean((ours[:, 0] - theirs[:, 0]) ** 2) + np.mean((ours[:, 1] - theirs[:, 1]) ** 2)
    np.testing.assert_allclose(terms["content"].numpy(), content, rtol=1e-4)
    np.testing.assert_allclose(terms["style"].numpy(), style_value, rtol=1e-4)
    np.testing.assert_allclose(total.numpy(), content + 10 * style_value, rtol=1e-4)


def test_huang_config_defaults_and_the_statistic_flag():
    huang = losses.LossConfig.huang()
    assert (huang.feature_extractor, huang.content_weight, huang.style_weight, huang.content_loss) == (
        "vgg19",
        1.0,
        10.0,
        "mean",
    )
    assert (huang.units, huang.style_statistic) == ("huang", "mean_std")
    assert losses.LossConfig().style_statistic == "gram"
    with pytest.raises(NSTError, match="--style_statistic: must be one of gram, mean_std"):
        losses.LossConfig(style_statistic="median")
