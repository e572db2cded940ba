"""Every loss formula against a direct NumPy transcription of the paper's equation."""

import numpy as np
import pytest
import tensorflow as tf

from nst_tf import losses


@pytest.fixture
def feats(rng):
    return rng.standard_normal((2, 5, 7, 4)).astype(np.float32)


def np_gram(f):
    """G_ij = sum_k F_ik F_jk with F the C x (H W) matrix of one image."""
    b, h, w, c = f.shape
    flat = f.reshape(b, h * w, c).transpose(0, 2, 1)  # [B, C, M]
    return np.einsum("bik,bjk->bij", flat, flat)


def test_gram_matrix_matches_definition(feats):
    np.testing.assert_allclose(losses.gram_matrix(feats).numpy(), np_gram(feats), rtol=1e-5, atol=1e-5)


def test_gram_matrix_normalized_divides_by_chw(feats):
    _, h, w, c = feats.shape
    got = losses.gram_matrix(feats, normalize=True).numpy()
    np.testing.assert_allclose(got, np_gram(feats) / (h * w * c), rtol=1e-5, atol=1e-6)


def test_gram_matrix_gradient_matches_autodiff_of_the_product(feats):
    weights = tf.constant(np.random.default_rng(3).normal(size=(feats.shape[0], 4, 4)).astype(np.float32))
    x = tf.constant(feats)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        flat = tf.reshape(x, [x.shape[0], -1, x.shape[-1]])
        ours = tf.reduce_sum(losses.gram_matrix(x) * weights)
        plain = tf.reduce_sum(tf.matmul(flat, flat, transpose_a=True) * weights)
    np.testing.assert_allclose(tape.gradient(ours, x), tape.gradient(plain, x), rtol=1e-4, atol=1e-4)


def test_gram_matrix_dynamic_shape_in_tf_function(feats):
    fn = tf.function(losses.gram_matrix, input_signature=[tf.TensorSpec([None, None, None, 4])])
    np.testing.assert_allclose(fn(feats).numpy(), np_gram(feats), rtol=1e-5, atol=1e-5)


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


def test_style_layer_loss_is_gatys_eq4(feats, rng):
    style = rng.standard_normal((1, 9, 3, 4)).astype(np.float32)
    a = np_gram(style)
    _, h, w, c = feats.shape
    g = np_gram(feats)
    expected = np.mean([np.sum((gi - a[0]) ** 2) for gi in g]) / (4 * c**2 * (h * w) ** 2)
    got = losses.style_layer_loss(feats, a).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_style_loss_default_weights_are_one_over_l(rng):
    f = {n: rng.standard_normal((1, 6, 6, 3)).astype(np.float32) for n in ("a", "b")}
    t = {n: np_gram(rng.standard_normal((1, 6, 6, 3)).astype(np.float32)) for n in ("a", "b")}
    per_layer = [losses.style_layer_loss(f[n], t[n]).numpy() for n in ("a", "b")]
    np.testing.assert_allclose(losses.style_loss(f, t).numpy(), np.mean(per_layer), rtol=1e-5)
    weighted = losses.style_loss(f, t, {"a": 2.0, "b": 0.0}).numpy()
    np.testing.assert_allclose(weighted, 2.0 * per_layer[0], rtol=1e-5)


def test_perceptual_style_loss_is_johnson_eq4(rng):
    f = {"a": rng.standard_normal((2, 4, 5, 3)).astype(np.float32)}
    s = rng.standard_normal((1, 8, 8, 3)).astype(np.float32)
    target = {"a": np_gram(s) / (8 * 8 * 3)}
    g = np_gram(f["a"]) / (4 * 5 * 3)
    expected = np.mean([np.sum((gi - target["a"][0]) ** 2) for gi in g])
    np.testing.assert_allclose(losses.perceptual_style_loss(f, target).numpy(), expected, rtol=1e-5)


def test_blend_grams_is_normalised_weighted_mean(rng):
    g1 = {"a": rng.random((1, 3, 3)).astype(np.float32)}
    g2 = {"a": rng.random((1, 3, 3)).astype(np.float32)}
    got = losses.blend_grams([g1, g2], [1.0, 3.0])["a"].numpy()
    np.testing.assert_allclose(got, 0.25 * g1["a"] + 0.75 * g2["a"], rtol=1e-6)
    with pytest.raises(ValueError):
        losses.blend_grams([g1, g2], [1.0])


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


def test_losses_are_float32_under_float16_features(feats):
    half = tf.cast(feats, tf.float16)
    assert losses.gram_matrix(half).dtype == tf.float32
    assert losses.content_loss(half, half).dtype == tf.float32
