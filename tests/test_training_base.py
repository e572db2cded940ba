"""The shared training base, on a toy regression trainer (no images, no VGG)."""

import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf import precision
from nst_tf.errors import NSTError
from nst_tf.training import base


class ToyTrainer(base.Trainer):
    """Fit y = x . w with Adam; batches carry skip counts like nst_tf.data's."""

    method = "toy"

    def __init__(self, config, width=4, **kwargs):
        self.width = width
        super().__init__(config, **kwargs)

    def build(self):
        keras.utils.set_random_seed(self.config.seed)
        self.model = keras.Sequential([keras.Input((self.width,)), keras.layers.Dense(1)])
        self.optimizer = self.make_optimizer(keras.optimizers.Adam(0.3))
        self.optimizer.build(self.model.trainable_variables)
        self.models = {"model": self.model}
        return {"model": self.model, "optimizer": self.optimizer}

    def make_dataset(self, input_context):
        w = tf.range(1.0, self.width + 1.0)[:, None]

        def element(i):
            x = tf.random.stateless_normal([self.width], seed=tf.stack([i, i]))
            return {"x": x, "y": tf.matmul(x[None], w)[0], "skipped": tf.constant(0, tf.int64)}

        ds = tf.data.Dataset.range(int(self.data_position.numpy()), 2**62).map(element)
        return ds.batch(input_context.get_per_replica_batch_size(8), drop_remainder=True)

    def train_step(self, batch):
        def loss_fn():
            pred = tf.cast(self.model(batch["x"]), tf.float32)
            return {"total": tf.reduce_mean(tf.square(pred - batch["y"]))}

        return self.minimize(loss_fn, self.optimizer, self.model.trainable_variables)

    def sample_images(self):
        return {"flat": tf.fill([1, 4, 4, 3], 0.5)}


def config(tmp_path, **kw):
    return base.TrainConfig(
        output_dir=str(tmp_path), **{"max_steps": 30, "checkpoint_every": 10, "log_every": 5, "image_every": 10, **kw}
    )


def state(trainer):
    return [v.numpy() for v in trainer.model.weights + trainer.optimizer.variables]


def test_loss_falls_and_run_files_written(tmp_path):
    trainer = ToyTrainer(config(tmp_path))
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = x @ np.arange(1.0, 5.0, dtype=np.float32)[:, None]
    before = np.mean((trainer.model(x).numpy() - y) ** 2)
    first = trainer.train(flags_text="--max_steps=30\n")
    assert first.step == 30 and not first.interrupted
    assert np.mean((trainer.model(x).numpy() - y) ** 2) < 0.1 * before
    description = json.loads((tmp_path / "model_config.json").read_text())
    assert description["method"] == "toy"
    assert description["models"]["model"]["class_name"] == "Sequential"
    assert (tmp_path / "flags.txt").read_text() == "--max_steps=30\n"
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("-30")
    assert list((tmp_path / "logs").iterdir())
    assert int(trainer.data_position.numpy()) == 30 * 8


def test_resume_continues_with_identical_variables(tmp_path, capsys):
    straight = ToyTrainer(config(tmp_path / "a"))
    straight.train()
    ToyTrainer(config(tmp_path / "b", max_steps=13)).train()  # stops between two checkpoints
    assert "resumed" not in capsys.readouterr().err  # nothing to resume: quiet
    resumed = ToyTrainer(config(tmp_path / "b"))
    assert int(resumed.step.numpy()) == 13
    assert capsys.readouterr().err == "resumed from step 13\n"
    assert int(resumed.data_position.numpy()) == 13 * 8
    resumed.train()
    for a, b in zip(state(straight), state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sigint_saves_a_checkpoint_and_stops(tmp_path):
    # Not default_int_handler: a shell starting the suite in the background ignores SIGINT.
    handler_before = signal.getsignal(signal.SIGINT)
    trainer = ToyTrainer(config(tmp_path))
    step_fn = trainer._distributed_step

    def step_then_interrupt(batch):
        values = step_fn(batch)
        if int(trainer.step.numpy()) == 7:
            signal.raise_signal(signal.SIGINT)
        return values

    trainer._distributed_step = step_then_interrupt
    result = trainer.train()
    assert result.interrupted and result.step == 7
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("-7")
    assert signal.getsignal(signal.SIGINT) is handler_before


@pytest.mark.parametrize(
    "settings, flag",
    [
        ({"output_dir": ""}, "--output_dir"),
        ({"max_steps": -1}, "--max_steps"),
        ({"checkpoint_every": 0}, "--checkpoint_every"),
        ({"log_every": 0}, "--log_every"),
        ({"image_every": -1}, "--image_every"),
        ({"keep_checkpoints": 0}, "--keep_checkpoints"),
    ],
)
def test_config_validates_on_construction(tmp_path, settings, flag):
    with pytest.raises(NSTError, match=f"^{flag}: "):
        base.TrainConfig(**{"output_dir": str(tmp_path), **settings})


def test_changed_model_is_a_clear_error(tmp_path):
    ToyTrainer(config(tmp_path, max_steps=2)).train()
    with pytest.raises(NSTError, match="does not match"):
        ToyTrainer(config(tmp_path), width=5)


@pytest.mark.parametrize("gpu, dtype", [(True, "float16"), (False, "bfloat16")])
def test_mixed_precision_trains_in_the_devices_16_bit_type(tmp_path, monkeypatch, gpu, dtype):
    """float16 with loss scaling where a GPU is visible, bfloat16 without on CPUs."""
    monkeypatch.setattr(precision, "mixed_precision", lambda: "float16" if gpu else "bfloat16")
    trainer = ToyTrainer(config(tmp_path, max_steps=20, mixed_precision=True))
    assert isinstance(trainer.optimizer, keras.mixed_precision.LossScaleOptimizer) == gpu
    assert trainer.model.layers[0].compute_dtype == dtype
    assert keras.mixed_precision.global_policy().name == "float32"
    result = trainer.train()
    assert np.isfinite(result.metrics["total"]) and result.metrics["total"] < 30


@pytest.mark.parametrize("lacks_units", [True, False])
def test_emulated_bfloat16_is_a_warning_before_training(tmp_path, monkeypatch, capsys, lacks_units):
    monkeypatch.setattr(precision, "mixed_precision", lambda: "bfloat16")
    monkeypatch.setattr(precision, "cpu_lacks_bfloat16", lambda *_: lacks_units)
    ToyTrainer(config(tmp_path, max_steps=2, mixed_precision=True))
    warned = "bfloat16 is emulated and slower than float32: --mixed_precision=false" in capsys.readouterr().err
    assert warned == lacks_units


def test_step_seed_depends_on_seed_and_step(tmp_path):
    trainer = ToyTrainer(config(tmp_path, seed=3))
    trainer.step.assign(5)
    np.testing.assert_array_equal(trainer.step_seed(1).numpy(), [4, 5])


def test_make_strategy_default_on_one_device(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = base.make_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert base.is_chief(strategy)


def test_load_trained_model_errors(tmp_path):
    with pytest.raises(NSTError, match="not a training output dir"):
        base.load_trained_model(str(tmp_path))
    (tmp_path / "model_config.json").write_text(json.dumps({"method": "fast", "models": {}}))
    with pytest.raises(NSTError, match="no model named"):
        base.load_trained_model(str(tmp_path))
    assert os.path.isdir(tmp_path)
