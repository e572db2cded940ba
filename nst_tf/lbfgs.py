"""Box-constrained L-BFGS for image optimisation, through tensorflow-probability.

Gatys et al. optimise the pixels of one image with L-BFGS. The image must stay
in [0, 1], and long runs need progress reports, TensorBoard and checkpoints, so
:func:`minimize` wraps ``tfp.optimizer.lbfgs_minimize`` as follows.

* **Bounds.** The optimiser minimises the exact penalty function

      F(x) = f(clip(x, 0, 1)) + (lambda / 2) * ||x - clip(x, 0, 1)||^2

  whose gradient is ``g(clip(x)) * [0 <= x <= 1] + lambda * (x - clip(x))``.
  ``F >= f(clip(x)) >= min over the box of f``, with equality at the box
  minimiser, so F and the box-constrained problem share their minimisers for
  any ``lambda > 0``; unlike a plain clip (zero gradient outside the box) the
  penalty pulls strayed pixels back. F is an ordinary function, so the Wolfe
  line search stays valid, costs nothing extra to evaluate, and the loss
  reported is exactly the loss of the image returned, ``clip(x)``.
* **Chunks.** The optimiser runs ``callback_every`` iterations at a time,
  resuming from ``previous_optimizer_results`` so its history survives, and the
  caller's ``callback`` runs between chunks.
* **Scaling.** tfp's first L-BFGS direction is the raw negative gradient with a
  unit trial step, so a loss in the millions sends the first line search far
  off and wastes evaluations shrinking it back. The objective is multiplied by
  ``first_step / max|g0|`` so that the first trial step moves the steepest pixel
  by ``first_step``. Later directions are scale-free (the two-loop recursion's
  ``s'y / y'y`` factor), so this only fixes the start.
"""

import dataclasses

import tensorflow as tf
import tensorflow_probability as tfp


@dataclasses.dataclass(frozen=True)
class LbfgsResult:
    """The outcome of :func:`minimize`.

    ``image`` has the shape of the initial image and lies in [0, 1]; ``loss``
    is the caller's (unscaled) objective at ``image``; ``evaluations`` counts
    every loss-and-gradient evaluation, line-search trials included.
    """

    image: tf.Tensor
    loss: float
    iterations: int
    evaluations: int


def minimize(
    value_and_gradient,
    initial,
    *,
    max_iterations,
    history_size=100,
    tolerance=1e-8,
    f_relative_tolerance=0.0,
    max_line_search_iterations=20,
    first_step=0.05,
    bound_weight=1.0,
    callback=None,
    callback_every=10,
):
    """Minimise ``value_and_gradient`` over images in [0, 1] with L-BFGS.

    Args:
      value_and_gradient: maps a float32 tensor shaped like ``initial`` to
        ``(scalar loss, gradient)``; ideally a ``tf.function``.
      initial: the starting image, e.g. ``[1, H, W, 3]`` in [0, 1].
      max_iterations: L-BFGS iterations (one line search each).
      history_size: correction pairs kept (``m`` in Nocedal & Wright).
      tolerance: stop when the scaled gradient's sup-norm falls below this.
      f_relative_tolerance: stop when one iteration lowers the loss by less
        than this fraction.
      max_line_search_iterations: Hager-Zhang iteration limit per line search.
      first_step: largest pixel change of the first trial step (see module doc).
      bound_weight: ``lambda`` of the bound penalty, in units of the scaled
        objective (see module doc).
      callback: ``callback(iteration, image, loss)``, called every
        ``callback_every`` iterations and at the end.
      callback_every: iterations per chunk between callbacks.

    Returns:
      An :class:`LbfgsResult`.
    """
    initial = tf.clip_by_value(tf.convert_to_tensor(initial, tf.float32), 0.0, 1.0)
    shape = initial.shape
    loss0, grad0 = value_and_gradient(initial)
    scale = tf.constant(first_step, tf.float32) / tf.maximum(
        tf.reduce_max(tf.abs(grad0)), tf.constant(1e-30, tf.float32)
    )

    def penalised(flat):
        x = tf.reshape(flat, shape)
        clipped = tf.clip_by_value(x, 0.0, 1.0)
        loss, grad = value_and_gradient(clipped)
        inside = tf.cast(tf.equal(x, clipped), grad.dtype)
        excess = tf.reshape(x - clipped, [-1])
        value = loss * scale + 0.5 * bound_weight * tf.reduce_sum(excess**2)
        return value, tf.reshape(grad * inside, [-1]) * scale + bound_weight * excess

    lbfgs = dict(
        num_correction_pairs=history_size,
        tolerance=tolerance,
        f_relative_tolerance=f_relative_tolerance,
        max_line_search_iterations=max_line_search_iterations,
    )

    @tf.function
    def start(flat, limit):
        return tfp.optimizer.lbfgs_minimize(
            penalised, initial_position=flat, max_iterations=limit, **lbfgs
        )

    @tf.function
    def resume(state, limit):
        return tfp.optimizer.lbfgs_minimize(
            penalised, None, previous_optimizer_results=state, max_iterations=limit, **lbfgs
        )

    def _loss(state):
        excess = state.position - tf.clip_by_value(state.position, 0.0, 1.0)
        penalty = 0.5 * bound_weight * tf.reduce_sum(excess**2)
        return float((state.objective_value - penalty) / scale)

    every = max(1, int(callback_every))
    state = None
    done = 0
    while done < max_iterations:
        limit = tf.constant(min(done + every, max_iterations), tf.int32)
        if state is None:
            state = start(tf.reshape(initial, [-1]), limit)
        else:
            state = resume(state, limit)
        stalled = int(state.num_iterations) == done
        done = int(state.num_iterations)
        finished = bool(state.converged) or bool(state.failed) or stalled
        if callback is not None:
            callback(done, _image(state.position, shape), _loss(state))
        if finished:
            break
    return LbfgsResult(
        image=_image(state.position, shape),
        loss=_loss(state),
        iterations=int(state.num_iterations),
        evaluations=int(state.num_objective_evaluations) + 1,
    )


def _image(flat, shape):
    return tf.reshape(tf.clip_by_value(flat, 0.0, 1.0), shape)
