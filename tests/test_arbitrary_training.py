"""AdaIN training (nst-train-arbitrary): photos x paintings data, the training loop, resume,
TensorBoard, tf.distribute and mixed precision, on a random VGG16, a narrow decoder and 32 px crops."""

import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles
from feedforward_helpers import mirrored_script
from feedforward_helpers import mock_tfds_photos
from feedforward_helpers import run_command
from feedforward_helpers import run_python
from feedforward_helpers import tiny_arbitrary_config as tiny_config

from nst_tf import data
from nst_tf import losses
from nst_tf.errors import NSTError
from nst_tf.models.arbitrary import ArbitraryStyleNet
from nst_tf.training import arbitrary
from nst_tf.training import base


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def paintings(tmp_path_factory):
    root = tmp_path_factory.mktemp("paintings")
    make_styles(root / "monet", count=3, seed=1)
    make_styles(root / "other" / "deeper", count=2, seed=2)
    return str(root)


@pytest.fixture(scope="module")
def fixed_pairs(photos, paintings):
    config = data.PhotoDataConfig(train_dir=photos, image_size=32, load_size=40, seed=9)
    return next(iter(data.content_style_dataset(config, data.style_files([paintings]), 4)))


def all_variables(trainer):
    return [v.numpy() for v in trainer.model.weights + trainer.optimizer.variables]


# ------------------------------------------------------------------ data


def test_style_files_are_searched_recursively_without_the_excluded(paintings):
    found = data.style_files([paintings])
    assert [os.path.relpath(p, paintings) for p in found] == [
        os.path.join("monet", f"style{i}.png") for i in range(3)
    ] + [os.path.join("other", "deeper", f"style{i}.png") for i in range(2)]
    kept = data.style_files([os.path.join(paintings, "monet")], exclude=["style1.png", "*2.png"])
    assert [os.path.basename(p) for p in kept] == ["style0.png"]
    with pytest.raises(NSTError, match="^--style_exclude: 'style9.png' matches no painting under --style_dir$"):
        data.style_files([paintings], exclude=["style9.png"])
    with pytest.raises(NSTError, match="^--style_dir: .*/missing: no such directory$"):
        data.style_files([paintings, os.path.join(paintings, "missing")])
    with pytest.raises(NSTError, match="^--style_dir: no image files found"):
        data.style_files([os.path.join(paintings, "monet")], exclude=["*.png"])


def test_pairs_are_the_photo_stream_with_paintings_and_resume_exactly(photos, paintings):
    config = data.PhotoDataConfig(train_dir=photos, image_size=32, load_size=40, seed=3)
    styles = data.style_files([paintings])
    batches = [b for b, _ in zip(data.content_style_dataset(config, styles, 2), range(3))]
    assert batches[0]["content"].shape == (2, 32, 32, 3) and batches[0]["style"].shape == (2, 32, 32, 3)
    # The photos are the feed-forward trainers' stream: same photos, same crops.
    alone = next(iter(data.photo_dataset(config, 2)))
    np.testing.assert_array_equal(batches[0]["content"], alone["images"])
    resumed = next(iter(data.content_style_dataset(config, styles, 2, start=4)))
    for key in ("content", "style"):
        np.testing.assert_array_equal(resumed[key], batches[2][key])
    # Five paintings in a fresh order each epoch: the first five pairs hold each painting once.
    first = np.concatenate([b["style"] for b in batches])[:5]
    assert len({arr.tobytes() for arr in first}) == 5


def test_an_unreadable_painting_is_skipped_and_counted(tmp_path, photos, paintings):
    folder = tmp_path / "paintings"
    make_styles(folder, count=3)
    (folder / "broken.png").write_bytes(b"\x89PNG truncated")
    config = data.PhotoDataConfig(train_dir=photos, image_size=32, seed=0)
    batches = [b for b, _ in zip(data.content_style_dataset(config, data.style_files([str(folder)]), 2), range(6))]
    assert sum(int(np.sum(b["skipped"])) for b in batches) >= 1


def test_content_photos_from_tfds_with_mock_data(rng, paintings):
    config = data.PhotoDataConfig(tfds_name="coco/2017", image_size=32, load_size=36)
    with mock_tfds_photos(rng):
        batches = [b for b, _ in zip(data.content_style_dataset(config, data.style_files([paintings]), 2), range(3))]
        resumed = next(iter(data.content_style_dataset(config, data.style_files([paintings]), 2, start=2)))
    assert batches[0]["content"].shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(resumed["content"], batches[1]["content"])
    np.testing.assert_array_equal(resumed["style"], batches[1]["style"])


def test_load_size_must_hold_the_crop():
    with pytest.raises(NSTError, match=r"^--load_size: must be >= --image_size \(64\), not 48$"):
        data.PhotoDataConfig(image_size=64, load_size=48)


# ------------------------------------------------------------------ training


def test_loss_falls_and_the_run_reloads_as_a_whole_model(tmp_path, photos, paintings, fixed_pairs):
    trainer = arbitrary.ArbitraryTrainer(tiny_config(photos, paintings, tmp_path, max_steps=30))
    content, style = fixed_pairs["content"], fixed_pairs["style"]
    before = trainer.loss_terms(content, style)
    result = trainer.train()
    after = trainer.loss_terms(content, style)
    assert result.step == 30 and not result.interrupted
    assert float(after["total"]) < 0.75 * float(before["total"])
    assert float(after["content"]) < float(before["content"])
    np.testing.assert_allclose(float(after["total"]), float(after["content"]) + 10 * float(after["style"]), rtol=1e-5)

    description = json.loads((tmp_path / "model_config.json").read_text())
    assert description["method"] == "arbitrary"
    assert description["models"]["model"]["class_name"] == "ArbitraryStyleNet"
    reloaded = base.load_trained_model(str(tmp_path))
    assert isinstance(reloaded, ArbitraryStyleNet)
    # The random encoder came back from the checkpoint too, not from --weights.
    assert reloaded.encoder_id == trainer.model.encoder_id
    np.testing.assert_array_equal(reloaded((content, style)), trainer.model((content, style)))


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, photos, paintings):
    def config(out, steps):
        return tiny_config(photos, paintings, tmp_path / out, max_steps=steps, checkpoint_every=2)

    straight = arbitrary.ArbitraryTrainer(config("a", 6))
    straight.train()
    arbitrary.ArbitraryTrainer(config("b", 3)).train()
    resumed = arbitrary.ArbitraryTrainer(config("b", 6))
    assert int(resumed.step.numpy()) == 3 and int(resumed.data_position.numpy()) == 6
    resumed.train()
    for a, b in zip(all_variables(straight), all_variables(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_tensorboard_has_the_terms_per_layer_and_the_sample_grid(tmp_path, photos, paintings):
    trainer = arbitrary.ArbitraryTrainer(tiny_config(photos, paintings, tmp_path, max_steps=2, image_every=2))
    metrics = trainer.train().metrics
    layers = losses.HUANG_STYLE_LAYERS
    assert {"total", "content", "style", "learning_rate", "content/block4_conv1"} <= set(metrics)
    np.testing.assert_allclose(sum(metrics[f"style/{name}"] for name in layers), metrics["style"], rtol=1e-5)
    np.testing.assert_allclose(metrics["learning_rate"], 1e-3 / (1 + 5e-5 * 2), rtol=1e-6)  # after two updates
    tags = {}
    for name in os.listdir(tmp_path / "logs"):
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "logs" / name)):
            for value in event.summary.value:
                tags[value.tag] = value
    assert {"train/total", "train/content", "train/style/block1_conv1", "samples/grid"} <= set(tags)
    grid = tf.io.decode_png(tf.make_tensor_proto(tags["samples/grid"].tensor).string_val[2]).numpy()
    assert grid.shape == (5 * 32, 5 * 32, 3)  # 4 paintings across, 4 photos down, 16 results
    assert (grid[:32, :32] == 255).all()  # the blank corner


def test_mixed_precision_trains_in_bfloat16_and_reloads_in_float32(tmp_path, photos, paintings, fixed_pairs):
    trainer = arbitrary.ArbitraryTrainer(tiny_config(photos, paintings, tmp_path, max_steps=2, mixed_precision=True))
    assert trainer.model.decoder.compute_dtype == "bfloat16"  # no GPU here
    assert trainer.model.encoder.compute_dtype == "bfloat16"
    assert np.isfinite(trainer.train().metrics["total"])
    reloaded = base.load_trained_model(str(tmp_path))
    assert reloaded.decoder.compute_dtype == "float32" and reloaded.encoder.compute_dtype == "float32"
    assert np.isfinite(reloaded((fixed_pairs["content"], fixed_pairs["style"])).numpy()).all()


def test_bad_settings_fail_before_building(tmp_path, photos, paintings):
    with pytest.raises(NSTError, match="^--style_dir: give at least one folder"):
        tiny_config(photos, [], tmp_path)
    with pytest.raises(NSTError, match="^--content_layers: one layer"):
        tiny_config(photos, paintings, tmp_path, loss=losses.LossConfig.huang(weights=None, content_layers=[3, 4]))
    with pytest.raises(NSTError, match="^--style_layers: must not be deeper than the encoder's output"):
        tiny_config(photos, paintings, tmp_path, loss=losses.LossConfig.huang(weights=None, style_layers=[12]))
    with pytest.raises(NSTError, match="^--feature_extractor: arbitrary style needs a VGG encoder"):
        tiny_config(
            photos, paintings, tmp_path, loss=losses.LossConfig.huang(feature_extractor="resnet50", weights=None)
        )
    with pytest.raises(NSTError, match="^--content_dir: .*/none: no such directory$"):
        arbitrary.ArbitraryTrainer(tiny_config(paintings + "/none", paintings, tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NSTError, match="^--content_dir: .*/empty: no image files found$"):
        arbitrary.ArbitraryTrainer(tiny_config(str(tmp_path / "empty"), paintings, tmp_path / "run"))


# ------------------------------------------------------------------ command and distribution


def test_train_arbitrary_command_with_a_flagfile(tmp_path, photos, paintings):
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text(
        f"--content_dir={photos}\n--style_dir={paintings}/monet\n--style_dir={paintings}/other\n"
        "--style_exclude=style1.png\n--image_size=32\n--load_size=40\n--batch_size=2\n--width=0.125\n"
        "--feature_extractor=vgg16\n--weights=none\n--max_steps=2\n"
    )
    out = tmp_path / "run"
    train_arbitrary = [sys.executable, "-m", "nst_tf.cli.train_arbitrary"]
    done = run_command([*train_arbitrary, f"--flagfile={flagfile}", f"--output_dir={out}"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("step 2: total=") and done.stdout.count("\n") == 1
    saved = (out / "flags.txt").read_text()
    assert f"--style_dir={paintings}/monet" in saved and "--style_exclude=style1.png" in saved

    bad = run_command([*train_arbitrary, f"--content_dir={photos}", f"--output_dir={out}2"])
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "train_arbitrary.py: error: --style_dir: give at least one folder of paintings"
    ]
    assert not (tmp_path / "run2").exists()


MIRRORED = mirrored_script(
    """
import sys
from feedforward_helpers import tiny_arbitrary_config as tiny_config
from nst_tf.training import arbitrary
photos, paintings, out = sys.argv[1:]
""",
    """
def trained(name, strategy, steps):
    trainer = arbitrary.ArbitraryTrainer(tiny_config(photos, paintings, f"{out}/{name}", max_steps=steps, batch_size=4),
                                         strategy=strategy)
    trainer.train()
    return trainer, [np.array(w.numpy()) for w in trainer.model.decoder.weights]
""",
)


def test_mirrored_strategy_trains_like_one_device(tmp_path, photos, paintings):
    """Two replicas of batch 2 take the same steps as one device with batch 4."""
    done = run_python(MIRRORED, photos, paintings, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["position"] == [12, 12]
    # The replicas sum their gradients in another order, and Adam turns a last-bit difference
    # in a near-zero gradient into a whole step of that weight: on AVX2-only CPUs the largest
    # single-weight difference has been 1.2% and 2.2% of the largest update (0.1% with
    # AVX-512). Over all weights together the difference is 1e-4 of the update; replicas
    # that trained on other batches would differ by most of it.
    assert result["update"] > 1e-4
    assert result["difference_norm"] < 0.01 * result["update_norm"]
