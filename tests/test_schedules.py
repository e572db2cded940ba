"""Learning-rate and loss-weight schedules (nst_tf.schedules) of Gatys, the feed-forward trainers and CycleGAN."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf import schedules


def test_named_learning_rates():
    step = schedules.learning_rate("step", 1.0, step_size=50, gamma=0.3)
    np.testing.assert_allclose([float(step(s)) for s in (0, 49, 50, 100)], [1.0, 1.0, 0.3, 0.09], rtol=1e-6)
    exponential = schedules.learning_rate("exponential", 1.0, step_size=50, gamma=0.3)
    np.testing.assert_allclose(float(exponential(25)), 0.3**0.5, rtol=1e-6)
    assert schedules.learning_rate("constant", 0.5) == schedules.learning_rate("plateau", 0.5) == 0.5
    linear = schedules.learning_rate("linear", 2e-4, constant_steps=10, decay_steps=10)
    assert isinstance(linear, schedules.LinearDecay) and float(linear(15)) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="unknown"):
        schedules.learning_rate("cosine", 1.0)


def test_linear_decay_schedule_values_at_epochs_0_100_150_200():
    steps_per_epoch = 37
    schedule = schedules.LinearDecay(2e-4, 100 * steps_per_epoch, 100 * steps_per_epoch)
    values = [float(schedule(epoch * steps_per_epoch)) for epoch in (0, 100, 150, 200, 250)]
    np.testing.assert_allclose(values, [2e-4, 2e-4, 1e-4, 0.0, 0.0], atol=1e-12)
    assert schedules.LinearDecay(**schedule.get_config()).get_config() == schedule.get_config()


def test_staged_schedule():
    scale = [float(schedules.style_weight_scale(t, warmup_steps=4, ramp_steps=4)) for t in range(10)]
    assert scale == [0, 0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert [float(schedules.style_weight_scale(t, 2, 0)) for t in range(4)] == [0, 0, 1, 1]
    schedule = schedules.HalvingSchedule(1e-3, start=100, every=50)
    lrs = [float(schedule(t)) for t in (0, 100, 149, 150, 250)]
    np.testing.assert_allclose(lrs, [1e-3, 1e-3, 1e-3, 5e-4, 1.25e-4])
    assert schedules.HalvingSchedule.from_config(schedule.get_config()).every == 50


@pytest.mark.parametrize(
    "name, schedule",
    [
        ("nst_tf>HalvingSchedule", schedules.HalvingSchedule(1e-3, start=10, every=5)),
        ("nst_tf>LinearDecay", schedules.LinearDecay(2e-4, 10, 20)),
    ],
)
def test_keras_schedules_keep_their_registered_names(name, schedule):
    assert keras.saving.get_registered_name(type(schedule)) == name
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(restored) is type(schedule) and restored.get_config() == schedule.get_config()


def test_plateau_cuts_the_rate_after_patience_flat_epochs_inside_a_tf_function():
    """CycleGAN's use: two steps an epoch, the epoch mean decides, inside the training step."""
    optimizer = keras.optimizers.Adam(1e-3)
    plateau = schedules.ReduceLROnPlateau(factor=0.5, patience=2)
    record = tf.function(lambda loss, end: plateau.record(loss, optimizer, end))
    epoch_losses = [3.0, 2.0, 2.0, 2.0, 2.5, 1.0]  # epochs 3, 4, 5 do not improve on 2.0
    rates = []
    for loss in epoch_losses:
        record(tf.constant(loss + 0.5), tf.constant(False))
        record(tf.constant(loss - 0.5), tf.constant(True))
        rates.append(float(optimizer.learning_rate))
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4])


def test_plateau_every_step_eagerly():
    """The Gatys Adam loop's use: every step is a period; a relative gain under 1e-4 is no gain."""
    optimizer = keras.optimizers.Adam(1.0)
    plateau = schedules.ReduceLROnPlateau(factor=0.5, patience=2)
    rates = []
    for loss in (10, 9, 9, 9, 9, 8, 8, 8, 8, 7.9995, 7.9995):
        plateau.record(loss, optimizer)
        rates.append(float(optimizer.learning_rate))
    assert rates == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert float(plateau.best) == 8.0 and int(plateau.bad_epochs) == 2
