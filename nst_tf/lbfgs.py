"""Box-constrained L-BFGS for image optimisation.

Gatys et al. optimise the pixels of one image with L-BFGS. Here the image must
stay in [0, 1], one loss-and-gradient evaluation of a VGG costs seconds, and
long runs need progress reports, TensorBoard and checkpoints between
iterations. :func:`minimize` offers two line searches:

``line_search="backtracking"`` (default): a compact projected L-BFGS in
TensorFlow, one evaluation per iteration in the usual case.

* Direction: ``-H g`` with ``H`` the L-BFGS inverse Hessian of the last
  ``history_size`` pairs ``s_k = x_{k+1} - x_k``, ``y_k = g_{k+1} - g_k`` and
  ``H_0 = (s'y / y'y) I``, computed in the compact form of Byrd, Nocedal &
  Schnabel (1994) rather than by the two-loop recursion (the same vector, a
  few matrix products instead of a loop of small ops); a pair is stored
  only if ``s'y > 0`` so ``H`` stays positive definite.
* Bounds (projected quasi-Newton, Bertsekas 1982): a pixel at 0 whose gradient
  points out of the box, or at 1 likewise, is *active*; its gradient entry is
  ignored and its direction entry zeroed, and the step is projected,
  ``x(t) = clip(x + t d, 0, 1)``. Every iterate lies in the box, so the loss
  reported is the loss of the image returned.
* Step: ``t = 1`` (the quasi-Newton step; the very first direction is the
  gradient scaled so its largest pixel change is ``first_step``), accepted if
  the Armijo condition ``f(x(t)) <= f(x) + 1e-4 g'(x(t) - x)`` holds, else
  halved, at most ``max_line_search_iterations`` times. The unit step almost
  always passes, so an iteration costs one evaluation: the same as
  ``torch.optim.LBFGS`` without a line search, but the loss never goes up.

``line_search="hager_zhang"``: ``tfp.optimizer.lbfgs_minimize``, whose Wolfe
line search is more careful per iteration but evaluates every trial step and
at least one secant point: two to three evaluations per iteration, measured
3x the wall time to the same loss on the Gatys benchmark
(``bench/gatys_lbfgs.py``). Bounds there use the exact penalty
``f(clip(x)) + 1/2 ||x - clip(x)||^2`` (same minimisers as the box problem,
and differentiable along any line, so Wolfe searches stay valid), and the
objective is scaled so the first trial step moves a pixel by ``first_step``.

:func:`minimize_in_graph` runs the Hager-Zhang variant as one graph, without callbacks,
for the exported Gatys model.

The backtracking iterations run in Python, call ``value_and_gradient`` directly
and one ``tf.function`` between evaluations; tfp's run ``callback_every``
iterations per ``tf.function`` call and resume from
``previous_optimizer_results``. Both call the caller's ``callback`` every
``callback_every`` iterations and at the end. ``tolerance`` is relative: stop when the
(projected) gradient's largest entry falls below ``tolerance`` times its value
at the start.
"""

import dataclasses
import typing

import tensorflow as tf

LINE_SEARCHES = ("backtracking", "hager_zhang")

# Armijo sufficient-decrease constant (Nocedal & Wright's c1).
_ARMIJO = 1e-4

# The defaults of :func:`minimize` and :func:`minimize_in_graph`, kept in one place so the
# exported Gatys model runs the CLI's L-BFGS.
HISTORY_SIZE = 20
TOLERANCE = 1e-7
MAX_LINE_SEARCH_ITERATIONS = 10
FIRST_STEP = 0.05


@dataclasses.dataclass(frozen=True)
class LbfgsResult:
    """The outcome of :func:`minimize`.

    ``image`` has the shape of the initial image and lies in [0, 1]; ``loss``
    is the objective at ``image``; ``evaluations`` counts every
    loss-and-gradient evaluation, line-search trials included.
    """

    image: tf.Tensor
    loss: float
    iterations: int
    evaluations: int
    # Whether ``should_stop`` ended the run before ``max_iterations`` or convergence.
    stopped: bool = False


def minimize(
    value_and_gradient,
    initial,
    *,
    max_iterations,
    history_size=HISTORY_SIZE,
    tolerance=TOLERANCE,
    line_search="backtracking",
    max_line_search_iterations=MAX_LINE_SEARCH_ITERATIONS,
    first_step=FIRST_STEP,
    callback=None,
    callback_every=10,
    should_stop=None,
):
    """Minimise ``value_and_gradient`` over images in [0, 1] with L-BFGS.

    Args:
      value_and_gradient: maps a float32 tensor shaped like ``initial`` to
        ``(scalar loss, gradient)``; ideally a ``tf.function``.
      initial: the starting image, e.g. ``[1, H, W, 3]``; clipped to [0, 1].
      max_iterations: L-BFGS iterations (one line search each).
      history_size: correction pairs kept (``m``); memory is ``2 m`` images.
        20 reaches the benchmark's target loss in as many evaluations as 100
        (111 vs 112) at a fifth of the memory (340 MiB at 1024x683 px).
      tolerance: stop when the gradient's sup-norm falls below this fraction
        of its initial value.
      line_search: ``"backtracking"`` or ``"hager_zhang"`` (see module doc).
      max_line_search_iterations: trial steps per iteration before giving up.
      first_step: largest pixel change of the first trial step.
      callback: ``callback(iteration, image, loss)``, called every
        ``callback_every`` iterations and at the end.
      callback_every: iterations between callbacks (with hager_zhang, also per
        ``tf.function`` call).
      should_stop: ``should_stop() -> bool``, asked after every iteration (with
        hager_zhang, after every ``tf.function`` call); True ends the run there, with
        ``stopped`` set in the result. A user's cancel button, say, then takes effect
        within one iteration without a callback's cost on every iteration.

    Returns:
      An :class:`LbfgsResult`.
    """
    if line_search not in LINE_SEARCHES:
        raise ValueError(f"line_search must be one of {LINE_SEARCHES}, not {line_search!r}")
    if history_size < 1 or max_iterations < 0 or max_line_search_iterations < 1:
        raise ValueError("history_size and max_line_search_iterations must be >= 1 and max_iterations >= 0")
    initial = tf.clip_by_value(tf.convert_to_tensor(initial, tf.float32), 0.0, 1.0)
    run = _backtracking if line_search == "backtracking" else _hager_zhang
    return run(
        value_and_gradient,
        initial,
        max_iterations=max_iterations,
        history_size=history_size,
        tolerance=tolerance,
        max_line_search_iterations=max_line_search_iterations,
        first_step=first_step,
        callback=callback,
        callback_every=max(1, int(callback_every)),
        should_stop=should_stop or (lambda: False),
    )


def _chunks(max_iterations, every):
    """Iteration limits at the end of each chunk: every, 2 every, ..., max_iterations."""
    return list(range(every, max_iterations, every)) + [max_iterations]


# ---------------------------------------------------------------------------
# Projected L-BFGS with a backtracking line search


def _backtracking(
    value_and_gradient,
    initial,
    *,
    max_iterations,
    history_size,
    tolerance,
    max_line_search_iterations,
    first_step,
    callback,
    callback_every,
    should_stop,
):
    # The iterations run in Python and call ``value_and_gradient`` directly, so the
    # objective's own compiled graph is reused; a ``tf.while_loop`` around it traced and
    # optimised the whole VGG graph again on every call (0.8 s per run). Between two
    # evaluations there is one call of the module-level ``_next_trial``, traced once per
    # image shape and history size for the whole process.
    shape = initial.shape
    history = _History.create(history_size, shape.num_elements())
    first_step = tf.constant(first_step, tf.float32)

    def evaluate(x):
        loss, grad = value_and_gradient(tf.reshape(x, shape))
        return tf.cast(loss, tf.float32), tf.reshape(tf.cast(grad, tf.float32), [-1])

    x = tf.reshape(initial, [-1])
    f, g = evaluate(x)
    evaluations = 1
    g_stop = tolerance * float(tf.reduce_max(tf.abs(g)))
    d, pairs, g_norm = _first_direction(x, g, first_step)
    step = tf.constant(1.0)
    trial = _projected_step(x, d, step)
    iteration = 0
    rejected = 0
    reported = None
    stopped = False

    def report():
        nonlocal reported
        if callback is not None and reported != iteration:
            callback(iteration, tf.reshape(x, shape), float(f))
        reported = iteration

    while iteration < max_iterations and float(g_norm) > g_stop:
        f_new, g_new = evaluate(trial)
        evaluations += 1
        accepted, pairs, d, step, next_trial, g_norm = _next_trial(
            history, x, f, g, d, step, trial, f_new, g_new, pairs, first_step
        )
        if bool(accepted):
            x, f, g = trial, f_new, g_new
            iteration += 1
            rejected = 0
            if iteration % callback_every == 0:
                report()
            if iteration < max_iterations and should_stop():
                stopped = True
                break
        else:
            rejected += 1
            if rejected == max_line_search_iterations:
                break  # no acceptable step: the line search failed
        trial = next_trial
    report()
    return LbfgsResult(
        image=tf.reshape(x, shape), loss=float(f), iterations=iteration, evaluations=evaluations, stopped=stopped
    )


# The step functions run on images flattened to one vector whose length changes with the
# image's size; reduce_retracing gives them one trace for every length after the second,
# where a folder of differently sized photos would otherwise retrace them per photo (and,
# from the fifth, log TensorFlow's retracing warning). Not ``_next_trial``: it takes the
# history's variables, and a relaxed trace of it, reused for a history of another size,
# indexed past that history's buffer.
@tf.function(reduce_retracing=True)
def _projected_step(x, d, step):
    return tf.clip_by_value(x + step * d, 0.0, 1.0)


def _free_gradient(x, g):
    """The free pixels and the gradient over them.

    A pixel at 0 whose gradient points out of the box, or at 1 likewise, is active
    (not free): its gradient entry is ignored and its direction entry zeroed.
    """
    free = ~(((x <= 0.0) & (g > 0.0)) | ((x >= 1.0) & (g < 0.0)))
    return free, tf.where(free, g, 0.0)


def _descent_direction(g, free, q, hq, pairs, first_step):
    """The search direction ``d = -H q`` over the free pixels, given ``hq = H q``.

    Returns ``(d, pairs, q_norm)``: ``q_norm`` is the free gradient's sup-norm (the stopping
    test) and ``pairs`` is 0 after a restart. Without pairs, or when ``-H q`` is not a
    descent direction (stale curvature), ``d`` is the gradient scaled so its largest pixel
    change is ``first_step``, and the history restarts empty.
    """
    q_norm = tf.reduce_max(tf.abs(q))
    d = -q * (first_step / q_norm)
    if pairs > 0:
        quasi_newton = tf.where(free, -hq, 0.0)
        if tf.tensordot(g, quasi_newton, 1) < 0.0:
            d = quasi_newton
        else:
            pairs = tf.constant(0)
    return d, pairs, q_norm


@tf.function(reduce_retracing=True)
def _first_direction(x, g, first_step):
    free, q = _free_gradient(x, g)
    return _descent_direction(g, free, q, q, tf.constant(0), first_step)


@tf.function
def _next_trial(history, x, f, g, d, step, trial, f_trial, g_trial, pairs, first_step):
    """Judge the evaluated ``trial`` point and return the next one to evaluate.

    If ``trial`` passes the Armijo test it is accepted: its pair is stored when the
    curvature ``s'y`` is positive (see :meth:`_History.update`), and the next trial is the
    unit step along the new direction. Otherwise the step along ``d`` is halved. Returns
    ``(accepted, pairs, direction, step, next trial, g_norm)``; ``g_norm`` (see
    :func:`_descent_direction`) is only meaningful when accepted.
    """
    s = trial - x
    y = g_trial - g
    accepted = tf.math.is_finite(f_trial) & (f_trial <= f + _ARMIJO * tf.tensordot(g, s, 1))
    if accepted:
        free, q = _free_gradient(trial, g_trial)
        pairs, hq = history.update(pairs, s, y, q)
        d, pairs, g_norm = _descent_direction(g_trial, free, q, hq, pairs, first_step)
        step = tf.constant(1.0)
        next_trial = _projected_step(trial, d, step)
    else:
        step = step * 0.5
        next_trial = _projected_step(x, d, step)
        g_norm = tf.constant(float("inf"))
    return accepted, pairs, d, step, next_trial, g_norm


class _History(typing.NamedTuple):
    """The last ``m`` correction pairs ``(s, y)`` and the L-BFGS product ``H q`` they define.

    ``rows`` is one ``[2m, n]`` ring buffer: pair number ``j`` (from 0) keeps ``s`` in row
    ``j % m`` and ``y`` in row ``m + j % m``. The inner products ``sy[i, j] = s_i'y_j`` and
    ``yy[i, j] = y_i'y_j`` between slots are kept up to date a row and a column per stored
    pair. An iteration reads the buffer twice, once for every inner product of the new
    ``s``, ``y`` and ``q`` with the stored rows and once for the combination of the rows
    that is ``H q``, and copies it once to replace a pair. These passes are memory-bound;
    storing, then multiplying with separate matrix-vector products read the history seven
    times.

    The variables are only ever assigned whole: one row assignment (a sparse write) makes
    TensorFlow copy the whole variable on every later read.

    A named tuple of variables, so a ``tf.function`` taking it traces once per shape,
    not once per history.
    """

    rows: tf.Variable
    sy: tf.Variable
    yy: tf.Variable

    @classmethod
    def create(cls, m, n):
        """An empty history of ``m`` pairs of ``n``-vectors."""
        return cls(*(tf.Variable(tf.zeros(size), trainable=False) for size in ([2 * m, n], [m, m], [m, m])))

    @property
    def m(self):
        return self.sy.shape[0]

    def update(self, pairs, s, y, q):
        """Store ``(s, y)`` as pair number ``pairs`` if its curvature ``s'y`` is positive (so
        ``H`` stays positive definite); return the pair count and ``H q`` for the history
        then held (``H = I`` while it is empty)."""
        m = self.m
        rows, sy, yy = (v.read_value() for v in self)
        # [3, 2m]: s, y and q against the stored rows. As A B' the product runs at twice
        # the speed of B A', which first transposes [s, y, q].
        dots = tf.matmul(tf.stack([s, y, q]), rows, transpose_b=True)
        sq, yq = dots[2, :m], dots[2, m:]
        s_y = tf.tensordot(s, y, 1)
        y_y = tf.tensordot(y, y, 1)
        slot = pairs % m
        at_slot = tf.one_hot(slot, m, on_value=True, off_value=False)

        def store():
            def with_new(matrix, row, column, corner):
                # Row ``slot`` of ``matrix`` becomes ``row`` and column ``slot`` becomes
                # ``column``, with ``corner`` where they cross.
                row = tf.where(at_slot, corner, row)
                column = tf.where(at_slot, corner, column)
                return tf.where(at_slot[:, None], row[None], tf.where(at_slot[None], column[:, None], matrix))

            return (
                tf.tensor_scatter_nd_update(rows, [[slot], [m + slot]], tf.stack([s, y])),
                with_new(sy, dots[0, m:], dots[1, :m], s_y),  # s'y_j, s_j'y
                with_new(yy, dots[1, m:], dots[1, m:], y_y),
                tf.where(at_slot, tf.tensordot(s, q, 1), sq),
                tf.where(at_slot, tf.tensordot(y, q, 1), yq),
                pairs + 1,
            )

        # tf.cond, not ``if``: AutoGraph does not convert a named tuple's methods.
        rows, sy, yy, sq, yq, pairs = tf.cond(s_y > 1e-10 * y_y, store, lambda: (rows, sy, yy, sq, yq, pairs))
        hq = tf.cond(pairs > 0, lambda: self._product(pairs, q, rows, sy, yy, sq, yq), lambda: q)
        for variable, value in zip(self, (rows, sy, yy)):
            variable.assign(value)
        return pairs, hq

    def _product(self, pairs, q, rows, sy, yy, sq, yq):
        """``H q`` for the inverse Hessian of the newest ``min(pairs, m)`` pairs, in compact form,
        given the history's values and ``sq``, ``yq``, the inner products of ``q`` with every
        slot's ``s`` and ``y``.

        Byrd, Nocedal & Schnabel (1994), eq. (3.1), with ``S``, ``Y`` the ``n x k`` matrices
        of the pairs in chronological order, ``R`` the upper triangle of ``S'Y``, ``D`` its
        diagonal and ``gamma = s'y / y'y`` of the newest pair:

            H q = gamma q + S p1 + gamma Y p2,   u = R^-1 S'q,   p2 = -u,
            p1 = R^-T ((D + gamma Y'Y) u - gamma Y'q)

        This equals the two-loop recursion's result (Nocedal & Wright, Algorithm 7.4) with a
        fixed handful of ops instead of 4k dependent vector operations, whose per-op
        overhead cost 1.4 ms per pair, a quarter of an iteration of the Gatys benchmark.
        The k x k algebra runs in float64.
        """
        m = self.m
        count = tf.minimum(pairs, m)
        # Ring slot of the i-th oldest pair; the small matrices are put in that order.
        order = (pairs - count + tf.range(count)) % m

        def chronological(matrix):
            return tf.gather(tf.gather(matrix, order), order, axis=1)

        sy, yy = chronological(sy), chronological(yy)
        sq, yq = tf.gather(sq, order), tf.gather(yq, order)
        sy, yy, sq, yq = (tf.cast(t, tf.float64) for t in (sy, yy, sq, yq))
        gamma = sy[-1, -1] / yy[-1, -1]
        upper = tf.linalg.band_part(sy, 0, -1)
        u = tf.linalg.triangular_solve(upper, sq[:, tf.newaxis], lower=False)
        w = tf.linalg.diag(tf.linalg.diag_part(sy)) @ u + gamma * (yy @ u) - gamma * yq[:, tf.newaxis]
        p1 = tf.linalg.triangular_solve(upper, w, lower=False, adjoint=True)[:, 0]
        p2 = -u[:, 0]
        # The coefficient of every buffer row, 0 for the slots not in use.
        coeffs = tf.scatter_nd(tf.concat([order, m + order], 0)[:, tf.newaxis], tf.concat([p1, gamma * p2], 0), [2 * m])
        return tf.cast(gamma, tf.float32) * q + tf.linalg.matvec(rows, tf.cast(coeffs, tf.float32), transpose_a=True)


# ---------------------------------------------------------------------------
# tfp.optimizer.lbfgs_minimize with its Hager-Zhang line search


def _tfp():
    # Imported on first use: tensorflow-probability (and the tf_keras it imports) adds most
    # of a second to every command's start-up, and only the Hager-Zhang search needs it.
    import tensorflow_probability as tfp  # pylint: disable=import-outside-toplevel

    return tfp


def _penalised(value_and_gradient, initial, first_step):
    """The box problem as tfp's unconstrained one, on flat vectors, and its scale.

    ``f(clip(x)) * scale + 1/2 ||x - clip(x)||^2`` with ``scale`` chosen so the first trial
    step (the raw negative gradient at ``initial``) moves the steepest pixel by ``first_step``.
    Graph-safe: ``initial``'s shape may be known only at run time.
    """
    shape = tf.shape(initial)
    _, grad0 = value_and_gradient(initial)
    g0 = tf.maximum(tf.reduce_max(tf.abs(tf.cast(grad0, tf.float32))), 1e-30)
    scale = first_step / g0

    def penalised(flat):
        x = tf.reshape(flat, shape)
        clipped = tf.clip_by_value(x, 0.0, 1.0)
        loss, grad = value_and_gradient(clipped)
        inside = tf.cast(tf.equal(x, clipped), tf.float32)
        excess = tf.reshape(x - clipped, [-1])
        value = tf.cast(loss, tf.float32) * scale + 0.5 * tf.reduce_sum(excess**2)
        return value, tf.reshape(tf.cast(grad, tf.float32) * inside, [-1]) * scale + excess

    return penalised, scale


def _tfp_options(history_size, tolerance, max_line_search_iterations, first_step):
    return dict(
        num_correction_pairs=history_size,
        tolerance=tolerance * first_step,
        max_line_search_iterations=max_line_search_iterations,
    )


def minimize_in_graph(
    value_and_gradient,
    initial,
    *,
    max_iterations,
    history_size=HISTORY_SIZE,
    tolerance=TOLERANCE,
    max_line_search_iterations=MAX_LINE_SEARCH_ITERATIONS,
    first_step=FIRST_STEP,
):
    """:func:`minimize` with ``line_search="hager_zhang"`` as one graph: the image in [0, 1].

    No callbacks and no Python between iterations, so it can be traced into a SavedModel
    (the exported Gatys model); ``initial``'s size may be dynamic.
    """
    initial = tf.clip_by_value(tf.convert_to_tensor(initial, tf.float32), 0.0, 1.0)
    penalised, _ = _penalised(value_and_gradient, initial, first_step)
    state = _tfp().optimizer.lbfgs_minimize(
        penalised,
        initial_position=tf.reshape(initial, [-1]),
        max_iterations=max_iterations,
        **_tfp_options(history_size, tolerance, max_line_search_iterations, first_step),
    )
    return tf.reshape(tf.clip_by_value(state.position, 0.0, 1.0), tf.shape(initial))


def _hager_zhang(
    value_and_gradient,
    initial,
    *,
    max_iterations,
    history_size,
    tolerance,
    max_line_search_iterations,
    first_step,
    callback,
    callback_every,
    should_stop,
):
    tfp = _tfp()
    shape = initial.shape
    penalised, scale = _penalised(value_and_gradient, initial, first_step)
    options = _tfp_options(history_size, tolerance, max_line_search_iterations, first_step)

    @tf.function
    def start(flat, limit):
        return tfp.optimizer.lbfgs_minimize(penalised, initial_position=flat, max_iterations=limit, **options)

    @tf.function
    def resume(state, limit):
        return tfp.optimizer.lbfgs_minimize(
            penalised, None, previous_optimizer_results=state, max_iterations=limit, **options
        )

    def loss_of(state):
        excess = state.position - tf.clip_by_value(state.position, 0.0, 1.0)
        return float((state.objective_value - 0.5 * tf.reduce_sum(excess**2)) / scale)

    def image_of(state):
        return tf.reshape(tf.clip_by_value(state.position, 0.0, 1.0), shape)

    state = None
    stopped = False
    for limit in _chunks(max_iterations, callback_every):
        done = 0 if state is None else int(state.num_iterations)
        if state is None:
            state = start(tf.reshape(initial, [-1]), tf.constant(limit))
        else:
            state = resume(state, tf.constant(limit))
        stalled = int(state.num_iterations) == done
        if callback is not None:
            callback(int(state.num_iterations), image_of(state), loss_of(state))
        if bool(state.converged) or bool(state.failed) or stalled:
            break
        if limit < max_iterations and should_stop():
            stopped = True
            break
    return LbfgsResult(
        image=image_of(state),
        loss=loss_of(state),
        iterations=int(state.num_iterations),
        evaluations=int(state.num_objective_evaluations) + 1,
        stopped=stopped,
    )
