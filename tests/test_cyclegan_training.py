"""CycleGAN training: GAN losses, image pool, LR schedules, unpaired data, the step, resume, flags."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from feedforward_helpers import logged_scalars
from PIL import Image

from nst_tf import config
from nst_tf import data
from nst_tf import losses
from nst_tf.errors import NSTError
from nst_tf.training import cyclegan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ losses


def test_gan_losses_match_their_formulas():
    real = tf.constant([[0.9, 1.2]])
    fake = tf.constant([[0.1, -0.3]])
    assert float(losses.lsgan_generator_loss(fake)) == pytest.approx(np.mean((np.array([0.1, -0.3]) - 1) ** 2))
    expected_d = 0.5 * (np.mean((np.array([0.9, 1.2]) - 1) ** 2) + np.mean(np.array([0.1, -0.3]) ** 2))
    assert float(losses.lsgan_discriminator_loss(real, fake)) == pytest.approx(expected_d)
    sig = lambda x: 1 / (1 + np.exp(-np.array(x)))  # noqa: E731
    assert float(losses.bce_generator_loss(fake)) == pytest.approx(-np.mean(np.log(sig([0.1, -0.3]))), rel=1e-5)
    expected_bce = -0.5 * (np.mean(np.log(sig([0.9, 1.2]))) + np.mean(np.log(1 - sig([0.1, -0.3]))))
    assert float(losses.bce_discriminator_loss(real, fake)) == pytest.approx(expected_bce, rel=1e-5)
    x, y = tf.fill([1, 2, 2, 3], 0.5), tf.fill([1, 2, 2, 3], -0.25)
    assert float(losses.cycle_consistency_loss(x, y)) == pytest.approx(0.75)
    assert float(losses.identity_loss(x, y)) == pytest.approx(0.75)


# ------------------------------------------------------------------ data


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """A tiny dataset in the authors' layout: 6 + 4 training and 2 + 2 test images."""
    root = tmp_path_factory.mktemp("unpaired")
    rng = np.random.default_rng(0)
    for split, count in (("trainA", 6), ("trainB", 4), ("testA", 2), ("testB", 2)):
        os.makedirs(root / split)
        for i in range(count):
            pixels = (rng.random((40 + i, 48, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / split / f"{i}.png")
    return str(root)


def test_unpaired_dataset_crops_flips_and_resumes(domains):
    config = data.UnpairedDataConfig(data_dir=domains, image_size=32, load_size=36, seed=3)
    assert data.unpaired_counts(config) == {"A": 6, "B": 4}
    stream = [b for b in data.unpaired_dataset(config, 2).take(7)]
    assert stream[0]["a"].shape == (2, 32, 32, 3)
    values = np.concatenate([b["a"].numpy().ravel() for b in stream])
    assert -1.0 <= values.min() < -0.5 and 0.5 < values.max() <= 1.0
    resumed = [b for b in data.unpaired_dataset(config, 2, start=10).take(2)]
    for got, want in zip(resumed, stream[5:]):
        np.testing.assert_array_equal(got["a"], want["a"])
        np.testing.assert_array_equal(got["b"], want["b"])
    limited = data.UnpairedDataConfig(data_dir=domains, image_size=32, load_size=36, max_train_images=3)
    assert data.unpaired_counts(limited) == {"A": 3, "B": 3}
    assert data.unpaired_test_images(config, "B", 2).shape == (2, 32, 32, 3)


def test_unpaired_data_from_tfds_mock():
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    config = data.UnpairedDataConfig(tfds_name="cycle_gan/horse2zebra", image_size=32, load_size=40)
    with tfds.testing.mock_data(num_examples=3):
        assert data.unpaired_counts(config) == {"A": 3, "B": 3}
        batch = next(iter(data.unpaired_dataset(config, 2)))
        test = data.unpaired_test_images(config, "A", 2)
    assert batch["a"].shape == batch["b"].shape == (2, 32, 32, 3)
    assert test.shape == (2, 32, 32, 3)


def test_missing_or_empty_domain_is_a_one_line_error(tmp_path, domains):
    os.makedirs(tmp_path / "trainA")
    with pytest.raises(NSTError, match="no trainA folder"):
        data.unpaired_counts(data.UnpairedDataConfig(data_dir=str(tmp_path / "nothing")))
    os.makedirs(tmp_path / "trainB")
    with pytest.raises(NSTError, match="trainA: no image files"):
        data.unpaired_counts(data.UnpairedDataConfig(data_dir=str(tmp_path)))


@pytest.mark.parametrize(
    "settings, flag",
    [
        (dict(image_size=64, load_size=48), "--load_size"),
        (dict(direction="sideways"), "--direction"),
        (dict(epochs=0, epochs_decay=0), "--epochs"),
        (dict(plateau_factor=1.0), "--plateau_factor"),
        (dict(batch_size=0), "--batch_size"),
        (dict(output_dir=""), "--output_dir"),
        (dict(checkpoint_every=0), "--checkpoint_every"),
    ],
)
def test_config_validates_on_construction(domains, settings, flag):
    with pytest.raises(NSTError, match=f"^{flag}: "):
        # By flag name, as the command builds it: image_size and load_size are the data's.
        config.replace(cyclegan.CycleGANConfig, **{"output_dir": "x", "data_dir": domains, **settings})


# ------------------------------------------------------------------ training


def tiny_config(domains, output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir),
        data=data.UnpairedDataConfig(data_dir=domains, image_size=32, load_size=36),
        n_blocks=1,
        ngf=8,
        ndf=8,
        epochs=1,
        epochs_decay=1,
        steps_per_epoch=2,
        pool_size=2,
        log_every=1,
        checkpoint_every=100,
        num_samples=2,
    )
    settings.update(overrides)
    return cyclegan.CycleGANConfig(**settings)


def all_variables(trainer):
    """Every checkpointed value: nets, both optimisers (slots, step, LR) and the pools."""
    values = [v.numpy() for m in trainer.models.values() for v in m.weights]
    values += [v.numpy() for opt in (trainer.g_optimizer, trainer.d_optimizer) for v in opt.variables]
    values += [p.images.numpy() for p in trainer.pools.values()] + [p.count.numpy() for p in trainer.pools.values()]
    return values


@pytest.fixture(scope="module")
def full_run(domains, tmp_path_factory):
    """An uninterrupted 4-step run (2 epochs of 2 steps): (trainer, result, initial weights)."""
    out = tmp_path_factory.mktemp("full")
    trainer = cyclegan.CycleGANTrainer(tiny_config(domains, out))
    initial = {name: [w.numpy().copy() for w in m.trainable_weights] for name, m in trainer.models.items()}
    result = trainer.train(flags_text="--ngf=8\n")
    return trainer, result, initial


def test_training_steps_update_all_four_nets(full_run):
    trainer, result, initial = full_run
    assert result.step == 4 and not result.interrupted
    assert set(trainer.models) == {"generator_a2b", "generator_b2a", "discriminator_a", "discriminator_b"}
    for name in ("total", "gan_g", "cycle", "identity", "d_loss"):
        assert np.isfinite(result.metrics[name]) and result.metrics[name] > 0, name
    for name, model in trainer.models.items():
        changed = [not np.array_equal(w.numpy(), w0) for w, w0 in zip(model.trainable_weights, initial[name])]
        assert all(changed), name
    # Epoch 2 of 2 is the linear decay: the rate after step 4 is 2e-4 * (4 - 4) / 2.
    assert result.metrics["learning_rate"] == pytest.approx(0.0)
    out = trainer.config.output_dir
    description = json.load(open(os.path.join(out, "model_config.json"), encoding="utf-8"))
    assert description["method"] == "cyclegan"
    assert description["models"]["generator_a2b"]["class_name"] == "ResnetGenerator"
    assert os.path.isfile(os.path.join(out, "flags.txt"))
    assert os.listdir(os.path.join(out, "logs"))


def resume_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("resumed")]


def test_resume_continues_from_the_same_step_with_identical_variables(full_run, domains, tmp_path, capsys):
    full_trainer, _, _ = full_run
    first = cyclegan.CycleGANTrainer(tiny_config(domains, tmp_path, max_steps=1))
    assert first.train().step == 1  # "interrupted" after step 1, mid-epoch
    assert resume_lines(capsys) == []
    resumed = cyclegan.CycleGANTrainer(tiny_config(domains, tmp_path))
    assert int(resumed.step.numpy()) == 1
    assert resume_lines(capsys) == ["resumed from step 1"]
    assert resumed.train().step == 4
    for got, want in zip(all_variables(resumed), all_variables(full_trainer)):
        np.testing.assert_array_equal(got, want)


def test_one_direction_trains_one_generator_and_one_discriminator(domains, tmp_path):
    trainer = cyclegan.CycleGANTrainer(
        tiny_config(domains, tmp_path, direction="a2b", max_steps=1, lr_schedule="plateau", gan_loss="bce")
    )
    result = trainer.train()
    assert set(trainer.models) == {"generator_a2b", "discriminator_b"}
    assert result.metrics["cycle"] == 0.0 and np.isfinite(result.metrics["total"])


# ------------------------------------------------------------------ flagfiles


def test_shipped_flagfiles_load_into_configs():
    configs = {
        name: config.from_flagfile(cyclegan.CycleGANConfig, os.path.join(REPO, "configs", name))
        for name in ["cyclegan_monet2photo.flags", "cyclegan_horse2zebra.flags", "cyclegan_quick.flags"]
    }
    paper = configs["cyclegan_monet2photo.flags"]
    assert (paper.data.image_size, paper.data.load_size, paper.n_blocks) == (256, 286, 9)
    assert (paper.epochs, paper.epochs_decay, paper.lambda_cycle, paper.pool_size) == (100, 100, 10.0, 50)
    assert paper.image_every is None  # the translation grid every epoch
    assert paper.output_dir == "runs/cyclegan_monet2photo"
    assert configs["cyclegan_horse2zebra.flags"].data.tfds_name == "cycle_gan/horse2zebra"
    quick = configs["cyclegan_quick.flags"]
    assert (quick.data.image_size, quick.n_blocks) == (128, 6)
    assert quick.epochs + quick.epochs_decay <= 10


# ------------------------------------------------------------------ real data


@pytest.mark.integration
@pytest.mark.slow
def test_real_monet2photo_run_reduces_the_cycle_loss(assets, tmp_path):
    """128 px, 6 blocks at half width, 120 steps on the shared 150 + 150 subset."""
    config = cyclegan.CycleGANConfig(
        output_dir=str(tmp_path),
        data=data.UnpairedDataConfig(data_dir=str(assets / "cyclegan" / "monet2photo"), image_size=128, load_size=143),
        n_blocks=6,
        ngf=32,
        ndf=32,
        epochs=2,
        epochs_decay=0,
        steps_per_epoch=60,
        log_every=1,
    )
    result = cyclegan.CycleGANTrainer(config).train()
    assert result.step == 120
    cycle = logged_scalars(os.path.join(str(tmp_path), "logs"))["train/cycle"]
    first = np.mean([cycle[s] for s in range(1, 21)])
    last = np.mean([cycle[s] for s in range(101, 121)])
    # Measured here: 0.89 over steps 1-20, 0.54 over steps 101-120 (both directions summed).
    assert last < 0.75 * first, (first, last)
