"""Learning-rate and loss-weight schedules of every method.

* :func:`learning_rate`: the named learning rates of the Gatys Adam loop and the
  CycleGAN trainer (constant, step, exponential, linear decay, plateau).
* :class:`HalvingSchedule` and :func:`style_weight_scale`: the staged schedule
  of the feed-forward trainers (a content-only warm-up, then the style weight
  ramps in while the learning rate halves).
* :class:`LinearDecay`: CycleGAN's constant-then-linear learning rate.
* :class:`ReduceLROnPlateau`: the one reduce-on-plateau rule, with
  checkpointable state, driven from inside a training ``tf.function`` by the
  Gatys Adam loop (every step) and the CycleGAN trainer (every epoch).

The Keras schedules are registered as ``nst_tf>HalvingSchedule`` and
``nst_tf>LinearDecay``, the names they had before they moved here.
"""

import keras
import tensorflow as tf


def learning_rate(name, initial, *, step_size=1, gamma=1.0, constant_steps=0, decay_steps=0):
    """The Keras learning rate (a float or a schedule) of the schedule ``name``.

    * ``constant`` and ``plateau``: ``initial`` (a plateau run then cuts the
      optimiser's rate with :class:`ReduceLROnPlateau`);
    * ``step``: lr(t) = lr0 · γ^⌊t / step_size⌋;
    * ``exponential``: lr(t) = lr0 · γ^(t / step_size);
    * ``linear``: :class:`LinearDecay` (``constant_steps``, then ``decay_steps`` to 0).
    """
    if name in ("constant", "plateau"):
        return initial
    if name in ("step", "exponential"):
        return keras.optimizers.schedules.ExponentialDecay(
            initial, decay_steps=step_size, decay_rate=gamma, staircase=name == "step"
        )
    if name == "linear":
        return LinearDecay(initial, constant_steps, decay_steps)
    raise ValueError(f"unknown learning-rate schedule {name!r}")


@keras.saving.register_keras_serializable(package="nst_tf")
class HalvingSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(t) = lr0 * 0.5 ** floor(max(0, t - start) / every)``; constant when ``every`` is 0."""

    def __init__(self, initial_learning_rate, start=0, every=0):
        self.initial_learning_rate = float(initial_learning_rate)
        self.start = int(start)
        self.every = int(every)

    def __call__(self, step):
        lr = tf.constant(self.initial_learning_rate, tf.float32)
        if self.every <= 0:
            return lr
        halvings = tf.floor(tf.maximum(0.0, tf.cast(step, tf.float32) - self.start) / self.every)
        return lr * tf.pow(0.5, halvings)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "start": self.start, "every": self.every}


def style_weight_scale(step, warmup_steps, ramp_steps):
    """s(t): 0 during the content-only warm-up, then a linear ramp to 1 over ``ramp_steps``."""
    t = tf.cast(step, tf.float32) - float(warmup_steps)
    if ramp_steps <= 0:
        return tf.cast(t >= 0.0, tf.float32)
    return tf.clip_by_value((t + 1.0) / float(ramp_steps), 0.0, 1.0)


@keras.saving.register_keras_serializable(package="nst_tf")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant, then linear decay to zero (Zhu et al. sec. 4)::

        lr(t) = lr0 * min(1, max(0, (t_constant + t_decay - t) / t_decay))

    with ``t`` the optimiser step: ``lr0`` for the first ``constant_steps``
    (``epochs`` epochs), reaching 0 after ``decay_steps`` more.
    """

    def __init__(self, initial_learning_rate, constant_steps, decay_steps):
        self.initial_learning_rate = float(initial_learning_rate)
        self.constant_steps = int(constant_steps)
        self.decay_steps = int(decay_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        end = float(self.constant_steps + self.decay_steps)
        fraction = tf.clip_by_value((end - step) / max(self.decay_steps, 1), 0.0, 1.0)
        return self.initial_learning_rate * fraction

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "constant_steps": self.constant_steps,
            "decay_steps": self.decay_steps,
        }


class ReduceLROnPlateau(tf.Module):
    """Reduce-on-plateau for a custom loop, with checkpointable state.

    The loss is averaged over a period (an epoch of the CycleGAN trainer, one
    step of the Gatys Adam loop). At each period's end the mean ``m`` counts as
    an improvement when ``m < best * (1 - threshold)``; after more than
    ``patience`` periods without one, the optimiser's learning rate is
    multiplied by ``factor`` and the count restarts. This is PyTorch's
    ``ReduceLROnPlateau`` in its default "min"/"rel" mode (factor 0.1,
    patience 10, threshold 1e-4).

    :meth:`record` runs eagerly or inside a ``tf.function``, and under a
    distribution strategy in a replica context when every replica records the
    same (all-reduced) loss. The variables keep the names of the CycleGAN
    checkpoints written before this class was shared (``bad_epochs``: periods).
    """

    def __init__(self, factor=0.1, patience=10, threshold=1e-4, name=None):
        super().__init__(name=name)
        self.factor = float(factor)
        self.patience = int(patience)
        self.threshold = float(threshold)
        # Replicas record the same mean loss, so any one of them can write.
        kw = {"trainable": False, "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA}
        self.best = tf.Variable(float("inf"), **kw)
        self.bad_epochs = tf.Variable(0, **kw)
        self.total = tf.Variable(0.0, **kw)
        self.count = tf.Variable(0.0, **kw)

    def record(self, loss, optimizer, end_of_period=True):
        """Add ``loss`` to the period's mean; at ``end_of_period`` maybe cut ``optimizer``'s rate."""
        self.total.assign_add(tf.cast(loss, tf.float32))
        self.count.assign_add(1.0)
        if end_of_period:
            mean = self.total / self.count
            self.total.assign(0.0)
            self.count.assign(0.0)
            if mean < self.best * (1.0 - self.threshold):
                self.best.assign(mean)
                self.bad_epochs.assign(0)
            else:
                self.bad_epochs.assign_add(1)
            if self.bad_epochs > self.patience:
                optimizer.learning_rate.assign(optimizer.learning_rate * self.factor)
                self.bad_epochs.assign(0)
