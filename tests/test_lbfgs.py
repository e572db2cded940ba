"""nst_tf.lbfgs: convergence, the [0, 1] box, callbacks, and a tiny style objective."""

import numpy as np
import pytest
import tensorflow as tf

from nst_tf import gatys
from nst_tf import lbfgs
from nst_tf.losses import LossConfig


def _value_and_gradient(loss_fn):
    @tf.function
    def value_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_fn(x)
        return loss, tape.gradient(loss, x)

    return value_and_gradient


@pytest.fixture
def box_quadratic(rng):
    """An ill-conditioned quadratic whose unconstrained minimum leaves the box."""
    target = rng.uniform(-0.3, 1.3, size=(1, 4, 5, 3)).astype(np.float32)
    weights = tf.constant([1.0, 10.0, 100.0])
    fn = _value_and_gradient(lambda x: tf.reduce_sum(weights * (x - target) ** 2))
    optimum = np.clip(target, 0.0, 1.0)
    return fn, optimum, float(fn(tf.constant(optimum))[0])


# The penalty's kink at the box slows tfp's path; the projected one is exact.
@pytest.mark.parametrize("line_search, atol", [("backtracking", 1e-3), ("hager_zhang", 3e-2)])
def test_quadratic_converges_to_the_box_minimiser(box_quadratic, line_search, atol):
    fn, optimum, best = box_quadratic
    # A long history: with fewer pairs tfp's search stalls sooner at the kink.
    result = lbfgs.minimize(
        fn, tf.fill(optimum.shape, 0.5), max_iterations=300, line_search=line_search, tolerance=1e-9, history_size=100
    )
    image = result.image.numpy()
    assert image.shape == optimum.shape
    assert image.min() >= 0.0 and image.max() <= 1.0
    np.testing.assert_allclose(image, optimum, atol=atol)
    assert result.loss == pytest.approx(best, rel=1e-3, abs=1e-4)
    # The reported loss is the loss of the returned image.
    assert result.loss == pytest.approx(float(fn(result.image)[0]), rel=1e-5, abs=1e-5)
    assert result.evaluations >= result.iterations >= 1


def test_backtracking_costs_about_one_evaluation_per_iteration(box_quadratic):
    fn, optimum, best = box_quadratic
    result = lbfgs.minimize(fn, tf.fill(optimum.shape, 0.5), max_iterations=300, tolerance=1e-9)
    assert result.loss == pytest.approx(best, rel=1e-3, abs=1e-4)
    assert result.evaluations <= 1.5 * result.iterations + 2


def _rosenbrock(x):
    """Chained Rosenbrock: its minimum, all ones, sits on the box's upper face."""
    v = tf.reshape(x, [-1])
    return tf.reduce_sum(100.0 * (v[1:] - v[:-1] ** 2) ** 2 + (1.0 - v[:-1]) ** 2)


def test_rosenbrock_reaches_the_corner_and_loss_never_rises():
    fn = _value_and_gradient(_rosenbrock)
    losses = []
    result = lbfgs.minimize(
        fn,
        tf.fill([1, 2, 2, 3], 0.2),
        max_iterations=400,
        tolerance=1e-10,
        callback=lambda i, image, loss: losses.append(loss),
        callback_every=5,
    )
    np.testing.assert_allclose(result.image.numpy(), 1.0, atol=1e-2)
    assert result.loss < 1e-3
    assert all(b <= a for a, b in zip(losses, losses[1:]))


@pytest.mark.parametrize("line_search", lbfgs.LINE_SEARCHES)
def test_callback_cadence(line_search):
    fn = _value_and_gradient(_rosenbrock)
    calls = []

    def callback(iteration, image, loss):
        assert image.shape == (1, 2, 2, 3)
        assert 0.0 <= float(tf.reduce_min(image)) and float(tf.reduce_max(image)) <= 1.0
        calls.append((iteration, loss))

    result = lbfgs.minimize(
        fn, tf.fill([1, 2, 2, 3], 0.2), max_iterations=10, line_search=line_search, callback=callback, callback_every=3
    )
    assert [i for i, _ in calls] == [3, 6, 9, 10]
    assert result.iterations == 10
    assert calls[-1][1] == pytest.approx(result.loss)


def test_zero_iterations_returns_the_clipped_start():
    fn = _value_and_gradient(_rosenbrock)
    start = np.full([1, 2, 2, 3], 1.5, np.float32)
    result = lbfgs.minimize(fn, start, max_iterations=0)
    np.testing.assert_array_equal(result.image.numpy(), np.ones_like(start))
    assert result.iterations == 0 and result.loss == pytest.approx(0.0)


def test_images_of_many_sizes_share_the_step_functions_traces():
    # nst-stylize on a folder runs one minimisation per photo, each of its own size.
    functions = (lbfgs._projected_step, lbfgs._first_direction)
    before = [f.experimental_get_tracing_count() for f in functions]
    for side in range(3, 10):
        fn = _value_and_gradient(_rosenbrock)
        result = lbfgs.minimize(fn, tf.fill([1, side, side + 1, 3], 0.5), max_iterations=3)
        assert result.iterations == 3
    added = [f.experimental_get_tracing_count() - b for f, b in zip(functions, before)]
    # Seven sizes: a trace for the first size, one for the rest (shape relaxed), and no more.
    assert all(n <= 2 for n in added), added


def test_histories_of_other_sizes_in_one_process_give_the_same_results():
    # One process (the app, a sweep, a test worker) runs many sizes of image and history
    # through the module-level step functions. A trace made for one history size, reused for
    # another, failed on its buffer or would change the result.
    def loss(history_size, side):
        start = tf.fill([1, side, side + 1, 3], 0.5)
        fn = _value_and_gradient(_rosenbrock)
        return lbfgs.minimize(fn, start, max_iterations=8, history_size=history_size).loss

    runs = [(50, 3), (50, 4), (50, 5), (20, 6), (20, 3), (5, 7), (50, 3), (5, 7)]
    first = {}
    for run in runs:
        result = loss(*run)
        assert first.setdefault(run, result) == result, run


def test_rejects_unknown_line_search():
    with pytest.raises(ValueError, match="line_search"):
        lbfgs.minimize(_value_and_gradient(_rosenbrock), tf.zeros([1, 2, 2, 3]), max_iterations=1, line_search="wolfe")


def test_tiny_style_objective_loss_falls(rng):
    config = gatys.GatysConfig(
        image_size=32,
        loss=LossConfig(
            feature_extractor="vgg16",
            weights=None,
            content_layers=["block2_conv2"],
            style_layers=["block1_conv1", "block2_conv1"],
        ),
    )
    content = rng.random((32, 24, 3)).astype(np.float32)
    style = rng.random((32, 32, 3)).astype(np.float32)
    objective = gatys.make_objective(gatys.build_extractor(config), content, [style], config)
    initial = tf.constant(content[None])
    start_loss = float(objective.value_and_gradient(initial)[0])
    losses = []
    result = lbfgs.minimize(
        objective.value_and_gradient,
        initial,
        max_iterations=20,
        callback=lambda i, image, loss: losses.append(loss),
        callback_every=5,
    )
    assert result.loss < 0.5 * start_loss
    assert losses == sorted(losses, reverse=True)
    assert result.image.shape == initial.shape


def two_loop(pairs, q):
    """Nocedal & Wright, Algorithm 7.4, in NumPy: H q for pairs [(s, y)] oldest first."""
    q = q.astype(np.float64).copy()
    alphas = []
    for s, y in reversed(pairs):
        alpha = s @ q / (s @ y)
        q -= alpha * y
        alphas.append(alpha)
    s, y = pairs[-1]
    r = q * (s @ y) / (y @ y)
    for (s, y), alpha in zip(pairs, reversed(alphas)):
        r += (alpha - y @ r / (s @ y)) * s
    return r


@pytest.mark.parametrize("stored", [1, 3, 5, 8])
def test_history_product_equals_the_two_loop_recursion(rng, stored):
    """The compact form, with the ring buffer and its inner products wrapped or not."""
    m, n = 5, 40
    history = lbfgs._History.create(m, n)
    q = rng.normal(size=n).astype(np.float32)
    pairs = []
    for j in range(stored):
        s = rng.normal(size=n).astype(np.float32)
        y = (s + 0.3 * rng.normal(size=n)).astype(np.float32)  # s'y > 0: every pair is stored
        count, got = history.update(tf.constant(j), s, y, q)
        pairs.append((s.astype(np.float64), y.astype(np.float64)))
        assert int(count) == j + 1
        np.testing.assert_allclose(got, two_loop(pairs[-m:], q), rtol=1e-4, atol=1e-4)


def test_history_skips_a_pair_without_positive_curvature(rng):
    m, n = 5, 40
    history = lbfgs._History.create(m, n)
    q = rng.normal(size=n).astype(np.float32)
    s = rng.normal(size=n).astype(np.float32)
    count, got = history.update(tf.constant(0), s, -s, q)
    assert int(count) == 0
    np.testing.assert_array_equal(got, q)  # H = I while the history is empty
    y = (s + 0.3 * rng.normal(size=n)).astype(np.float32)
    history.update(tf.constant(0), s, y, q)
    count, got = history.update(tf.constant(1), s, -s, q)
    assert int(count) == 1
    np.testing.assert_allclose(got, two_loop([(s.astype(np.float64), y.astype(np.float64))], q), rtol=1e-4, atol=1e-4)


def test_history_product_after_a_restart_ignores_the_stale_slots(rng):
    """After a restart the count starts again at 0 while old pairs still fill the buffer."""
    m, n = 5, 40
    history = lbfgs._History.create(m, n)
    q = rng.normal(size=n).astype(np.float32)

    def pair():
        s = rng.normal(size=n).astype(np.float32)
        return s, (s + 0.3 * rng.normal(size=n)).astype(np.float32)

    for j in range(7):
        history.update(tf.constant(j), *pair(), q)
    fresh = [pair() for _ in range(2)]
    for j, (s, y) in enumerate(fresh):
        _, got = history.update(tf.constant(j), s, y, q)
    expected = two_loop([(s.astype(np.float64), y.astype(np.float64)) for s, y in fresh], q)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
