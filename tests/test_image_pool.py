"""The history pool of generated images (nst_tf.training.image_pool)."""

import numpy as np
import tensorflow as tf

from nst_tf.training.image_pool import ImagePool


def test_pool_fills_then_returns_a_past_image_half_the_time():
    pool = ImagePool(5, (2, 2, 1))
    query = tf.function(lambda images, step: pool.query(images, tf.stack([tf.constant(7, tf.int64), step])))
    seen = set()
    for step in range(5):  # filling: every image is stored and returned as is
        out = query(tf.fill([1, 2, 2, 1], float(step)), tf.constant(step, tf.int64))
        assert float(out[0, 0, 0, 0]) == step
        seen.add(float(step))
    assert int(pool.count.numpy()) == 5
    swapped = 0
    trials = 400
    for step in range(5, 5 + trials):
        out = float(query(tf.fill([1, 2, 2, 1], float(step)), tf.constant(step, tf.int64))[0, 0, 0, 0])
        if out != step:
            swapped += 1
            assert out in seen  # a past image that was in the pool
            seen.discard(out)
        seen.add(float(step))  # the query is now in the pool, or was returned
        stored = set(pool.images.numpy()[:, 0, 0, 0].tolist())
        assert stored <= seen
    assert int(pool.count.numpy()) == 5
    assert 0.4 < swapped / trials < 0.6


def test_pool_of_size_zero_passes_images_through():
    pool = ImagePool(0, (2, 2, 1))
    images = tf.random.normal([3, 2, 2, 1])
    np.testing.assert_array_equal(pool.query(images, tf.constant([1, 2], tf.int64)), images)
