"""Johnson (fast) and Dumoulin (multi-style) training on tiny nets, 32 px, random VGG16."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from feedforward_helpers import REPO
from feedforward_helpers import logged_scalars
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles
from feedforward_helpers import smooth_image
from feedforward_helpers import tiny_config

from nst_tf import data
from nst_tf import evaluation
from nst_tf import images
from nst_tf import losses
from nst_tf.errors import NSTError
from nst_tf.training import base
from nst_tf.training import feedforward as ff


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def styles(tmp_path_factory):
    return make_styles(tmp_path_factory.mktemp("styles"), count=3)


@pytest.fixture(scope="module")
def fixed_photos(photos):
    return next(iter(data.photo_dataset(data.PhotoDataConfig(photos, image_size=32, seed=9), 4)))["images"]


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    """Two held-out photos of other shapes than the training crops, one with odd sides."""
    folder = tmp_path_factory.mktemp("held_out")
    rng = np.random.default_rng(7)
    images.save_image(str(folder / "a.png"), smooth_image(rng, 37, 45))
    images.save_image(str(folder / "b.png"), smooth_image(rng, 48, 40))
    return str(folder)


def weights(trainer):
    return [v.numpy() for v in trainer.model.weights + trainer.optimizer.variables]


def test_fast_loss_falls_and_model_reloads(tmp_path, photos, styles, fixed_photos):
    trainer = ff.FeedForwardTrainer(tiny_config(photos, styles[:1], tmp_path, max_steps=25))
    index = tf.zeros([4], tf.int32)
    before = trainer.loss_terms(trainer.model(fixed_photos), fixed_photos, index)
    result = trainer.train()
    after = trainer.loss_terms(trainer.model(fixed_photos), fixed_photos, index)
    assert result.step == 25 and not result.interrupted
    assert float(after["total"]) < 0.75 * float(before["total"])
    assert float(after["style"]) < float(before["style"])

    description = json.loads((tmp_path / "model_config.json").read_text())
    assert description["method"] == "fast" and description["style_names"] == ["style0"]
    reloaded = base.load_trained_model(str(tmp_path))
    np.testing.assert_array_equal(reloaded(fixed_photos).numpy(), trainer.model(fixed_photos).numpy())


def test_resume_continues_with_identical_variables(tmp_path, photos, styles):
    def config(out, max_steps):
        return tiny_config(photos, styles[:2], tmp_path / out, max_steps=max_steps, learning_rate=1e-3)

    straight = ff.FeedForwardTrainer(config("a", 6))
    straight.train()
    ff.FeedForwardTrainer(config("b", 3)).train()
    resumed = ff.FeedForwardTrainer(config("b", 6))
    assert int(resumed.step.numpy()) == 3 and int(resumed.data_position.numpy()) == 6
    resumed.train()
    for a, b in zip(weights(straight), weights(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def multistyle_run(tmp_path_factory, photos, styles):
    out = tmp_path_factory.mktemp("multistyle")
    ff.FeedForwardTrainer(tiny_config(photos, styles[:2], out, max_steps=12)).train()
    return str(out)


def test_interpolation_lies_between_the_pure_styles(multistyle_run, fixed_photos):
    model = base.load_trained_model(multistyle_run)
    outputs = [model((fixed_photos, tf.constant([1.0 - t, t]))).numpy() for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    to_a = [np.abs(o - outputs[0]).mean() for o in outputs]
    to_b = [np.abs(o - outputs[-1]).mean() for o in outputs]
    assert to_a[-1] > 1e-3  # the two trained styles really differ
    assert np.all(np.diff(to_a) > 0) and np.all(np.diff(to_b) < 0)
    assert max(to_a[2], to_b[2]) < to_a[-1]


def test_adding_a_style_leaves_the_old_ones_bit_identical(tmp_path, multistyle_run, photos, styles, fixed_photos):
    trainer = ff.FeedForwardTrainer(tiny_config(photos, styles[2:], tmp_path, base_dir=multistyle_run, multistyle=True))
    start = [v.numpy() for v in trainer.train_variables]
    trainer.train()
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(start, trainer.train_variables))

    old = base.load_trained_model(multistyle_run)
    new = base.load_trained_model(str(tmp_path))
    assert new.num_styles == 3

    def stylize(model, style):
        return model((fixed_photos, tf.one_hot(style, model.num_styles))).numpy()

    for i in range(2):
        np.testing.assert_array_equal(stylize(new, i), stylize(old, i))
    assert not np.array_equal(stylize(new, 2), stylize(new, 0))
    description = json.loads((tmp_path / "model_config.json").read_text())
    assert description["style_names"] == ["style0", "style1", "style2"]


def test_add_style_refuses_a_fast_base_or_the_same_dir(tmp_path, multistyle_run, photos, styles):
    with pytest.raises(NSTError, match="must differ from --base_dir"):
        tiny_config(photos, styles[2:], multistyle_run, base_dir=multistyle_run)
    fast = tmp_path / "fast"
    fast.mkdir()
    (fast / "model_config.json").write_text(json.dumps({"method": "fast", "models": {}}))
    with pytest.raises(NSTError, match="not a multi-style run"):
        ff.FeedForwardTrainer(tiny_config(photos, styles[2:], tmp_path / "x", base_dir=str(fast)))


def test_staged_training_is_content_only_during_warmup(tmp_path, photos, styles):
    config = tiny_config(
        photos, styles[:1], tmp_path, max_steps=3, warmup_steps=3, style_ramp_steps=2, lr_halve_every=2
    )
    trainer = ff.FeedForwardTrainer(config)
    result = trainer.train()
    assert result.metrics["style_scale"] == 0.0
    content_and_tv = result.metrics["content"] + 1e-6 * result.metrics["tv"]
    np.testing.assert_allclose(result.metrics["total"], content_and_tv, rtol=1e-5)


def test_metrics_and_tensorboard_have_the_terms_and_their_layers(tmp_path, photos, styles):
    trainer = ff.FeedForwardTrainer(tiny_config(photos, styles[:1], tmp_path, max_steps=2))
    metrics = trainer.train().metrics
    layers = ["block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"]
    assert {"total", "content", "style", "tv", "content/block2_conv2"} <= set(metrics)
    np.testing.assert_allclose(sum(metrics[f"style/{name}"] for name in layers), metrics["style"], rtol=1e-5)
    tags = set()
    for name in os.listdir(tmp_path / "logs"):
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "logs" / name)):
            tags.update(value.tag for value in event.summary.value)
    assert {"train/total", "train/style", "train/style/block3_conv3", "train/content/block2_conv2"} <= tags


def test_held_out_metrics_are_nst_eval_on_the_net_outputs(tmp_path, photos, styles, eval_dir):
    config = tiny_config(photos, styles[:1], tmp_path, max_steps=3, eval_dir=eval_dir, eval_every=2, eval_size=44)
    trainer = ff.FeedForwardTrainer(config)
    result = trainer.train()
    # At every --eval_every steps and at the last step.
    scalars = logged_scalars(tmp_path / "logs")
    assert set(scalars["eval/style0/style_gram_ratio"]) == {2, 3}
    assert "eval/style0/style_gram_ratio/block2_conv2" in scalars and "eval/style0/ssim_luminance" in scalars
    assert scalars["eval/style0/ssim_luminance"][3] == pytest.approx(result.eval_metrics["style0/ssim_luminance"])

    # The medians of what nst-eval measures on the trained net's outputs at --eval_size.
    model = base.load_trained_model(str(tmp_path))
    painting = images.load_image(styles[0], max_side=44)
    results = []
    for path in images.list_images(eval_dir):
        photo = images.load_image(path, max_side=44)
        output = np.clip(model(photo[None]).numpy()[0], 0.0, 1.0)
        assert output.shape == photo.shape
        results.append(
            evaluation.evaluate(
                output,
                photo,
                painting,
                config=evaluation.EvalConfig.of_loss(config.loss),
                extractor=trainer.loss.extractor,
            )
        )
    expected = evaluation.median_metrics(results)
    assert len(expected) == len(evaluation.SUMMARY_METRICS)
    for name, value in expected.items():
        assert result.eval_metrics[f"style0/{name}"] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_evaluating_leaves_the_training_unchanged(tmp_path, photos, styles, eval_dir):
    def run(out, **kwargs):
        trainer = ff.FeedForwardTrainer(tiny_config(photos, styles[:2], tmp_path / out, max_steps=2, **kwargs))
        return trainer, trainer.train()

    plain, _ = run("plain")
    evaluated, result = run("evaluated", eval_dir=eval_dir, eval_every=1)
    for a, b in zip(weights(plain), weights(evaluated)):
        np.testing.assert_array_equal(a, b)
    # A multi-style net is measured in each trained style.
    assert {"style0/style_gram_ratio", "style1/style_gram_ratio"} <= set(result.eval_metrics)


def test_loss_layers_and_weights(styles):
    assert losses.LossConfig.johnson().layers() == (
        ["block2_conv2"],
        ["block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"],
    )
    assert losses.LossConfig.johnson(content_layers=["3"], style_layers=["0"]).layers() == (
        ["block2_conv2"],
        ["block1_conv1"],
    )
    assert losses.LossConfig.johnson(feature_extractor="resnet50").layers() == losses.default_layers("resnet50")
    with pytest.raises(NSTError, match="--style_layer_weights"):
        losses.LossConfig.johnson(weights=None, style_layer_weights=[1.0])


@pytest.mark.filterwarnings("error")
def test_loss_takes_arrays_without_keras_input_structure_warnings():
    # The content sub-model once took the extractor's input *list*, so a plain array
    # made Keras warn that the input structure did not match, on every new trace.
    rng = np.random.default_rng(0)
    loss = losses.PerceptualLoss(losses.LossConfig.johnson(weights=None))
    style = loss.style_target([rng.random((32, 32, 3), np.float32)])
    photos = rng.random((2, 32, 32, 3), np.float32)
    total, _ = loss(tf.constant(photos), loss.content_target(photos), style, tf.zeros([2], tf.int32))
    assert np.isfinite(float(total))


def test_bad_inputs_fail_before_building(tmp_path, photos, styles):
    with pytest.raises(NSTError, match="no such file"):
        ff.FeedForwardTrainer(tiny_config(photos, [str(tmp_path / "nope.jpg")], tmp_path))
    with pytest.raises(NSTError, match="no image files"):
        ff.FeedForwardTrainer(tiny_config(str(tmp_path), styles[:1], tmp_path))
    with pytest.raises(NSTError, match="one style image"):
        tiny_config(photos, styles[:2], tmp_path, multistyle=False)
    with pytest.raises(NSTError, match="--style: give at least one"):
        tiny_config(photos, [], tmp_path)
    with pytest.raises(NSTError, match="--batch_size"):
        tiny_config(photos, styles[:1], tmp_path, batch_size=0)
    with pytest.raises(NSTError, match="--eval_size"):
        tiny_config(photos, styles[:1], tmp_path, eval_size=8)


def test_a_bad_eval_dir_fails_before_anything_is_written(tmp_path, photos, styles):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "photo.jpg").write_bytes(b"not a jpeg")
    cases = [(tmp_path / "missing", "--eval_dir: .*missing: no such directory"), (empty, "no image files")]
    cases.append((broken, "photo.jpg"))
    for folder, message in cases:
        out = tmp_path / f"run_{folder.name}"
        with pytest.raises(NSTError, match=message):
            ff.FeedForwardTrainer(tiny_config(photos, styles[:1], out, eval_dir=str(folder)))
        assert not out.exists() or not os.listdir(out)


def run_cli(module, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_train_fast_command_and_flagfile(tmp_path, photos, styles, eval_dir):
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text(
        f"# a tiny run\n--style={styles[0]}\n--train_dir={photos}\n--image_size=32\n--batch_size=2\n"
        "--width=0.125\n--num_residual_blocks=1\n--weights=none\n--max_steps=2\n"
    )
    out = tmp_path / "run"
    done = run_cli("nst_tf.cli.train_fast", f"--flagfile={flagfile}", f"--output_dir={out}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("step 2: total=") and done.stdout.count("\n") == 1
    assert f"--style={styles[0]}" in (out / "flags.txt").read_text()
    assert "--helpfull" not in (out / "flags.txt").read_text()
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("-2")

    # Resumed one step further with held-out photos: the result line ends with their measurement.
    more = run_cli(
        "nst_tf.cli.train_fast",
        f"--flagfile={flagfile}",
        f"--output_dir={out}",
        "--max_steps=3",
        f"--eval_dir={eval_dir}",
        "--eval_size=44",
    )
    assert more.returncode == 0, more.stderr
    assert re.fullmatch(
        rf"step 3: total=\S+ .*; held-out style0 style ratio \S+, SSIM \S+; model in {out}\n", more.stdout
    )

    missing = run_cli(
        "nst_tf.cli.train_fast",
        "--style=/no/such.jpg",
        f"--train_dir={photos}",
        "--weights=none",
        f"--output_dir={out}2",
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].endswith("/no/such.jpg: no such file")
    assert not (tmp_path / "run2").exists()


def test_train_multistyle_flag_combinations(tmp_path, styles):
    both = run_cli(
        "nst_tf.cli.train_multistyle",
        f"--style={styles[0]}",
        f"--add_style={styles[1]}",
        f"--base_dir={tmp_path}",
        f"--output_dir={tmp_path}/o",
    )
    assert both.returncode != 0 and "either --style" in both.stderr


CHECK_FLAGFILES = """
import glob, sys
from absl import flags
import nst_tf.cli.train_multistyle  # defines every feed-forward training flag
for path in sorted(glob.glob("configs/fast_*.flags") + glob.glob("configs/multistyle_*.flags")):
    for arg in flags.FLAGS.read_flags_from_files([f"--flagfile={path}"]):
        name = arg[2:].split("=", 1)[0]
        assert name in flags.FLAGS, f"{path}: unknown flag {name}"
    print(path)
"""


def test_shipped_flagfiles_use_known_flags():
    done = subprocess.run(
        [sys.executable, "-c", CHECK_FLAGFILES],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "configs/multistyle_monet_vangogh.flags" in done.stdout.split()
    assert len(done.stdout.split()) >= 3


@pytest.mark.integration
@pytest.mark.slow
def test_real_training_stylizes_and_keeps_content(tmp_path, assets, hed_weights):
    """300 steps at 128 px on the real photos with the HED VGG16 as loss network.

    Style: the perceptual style loss of held-out outputs against The Starry Night
    must fall to under half of the untrained net's. Content: SSIM of luminance
    between output and input must stay above 0.3 and above three times the SSIM
    of mismatched pairs (output vs another photo), which is what unrelated
    images of these photos score: the scene stays recognisable under the style.

    Measured: style loss 2997 (untrained net) and 6770 (the photos) -> 88-204;
    SSIM 0.50-0.53 (min 0.34-0.39) vs 0.09 mismatched. The spread is over runs
    that differ only in float rounding (the same net computed another way) or
    in a 1e-5 relative change of the learning rate: 300 steps of this schedule
    are that sensitive, which is why the bounds are loose. With Johnson's style weight 5 and
    no warm-up, 300 steps wipe the content (SSIM 0.16) with this loss net:
    the trouble the HKU COMP 3359 report ran into, hence the staged schedule and style weight 1 here.
    """
    from nst_tf.images import list_images  # pylint: disable=import-outside-toplevel
    from nst_tf.images import load_image  # pylint: disable=import-outside-toplevel
    from nst_tf.images import resize_image  # pylint: disable=import-outside-toplevel
    from nst_tf.images import rgb_to_yiq  # pylint: disable=import-outside-toplevel

    photos = list_images(assets / "photos")
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for path in photos[:-8]:
        os.symlink(path, train_dir / os.path.basename(path))
    held_out = np.stack([resize_image(load_image(p), (128, 128)) for p in photos[-8:]])
    config = ff.FeedForwardConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=300,
        checkpoint_every=100,
        log_every=2,
        image_every=0,
        style_images=[str(assets / "images" / "style" / "starry_night.jpg")],
        data=data.PhotoDataConfig(train_dir=str(train_dir), image_size=128),
        loss=losses.LossConfig.johnson(weights=hed_weights, style_weight=1.0),
        style_size=256,
        width=0.25,
        batch_size=2,
        learning_rate=2e-3,
        warmup_steps=60,
        style_ramp_steps=120,
    )
    trainer = ff.FeedForwardTrainer(config)
    index = tf.zeros([len(held_out)], tf.int32)

    def style_loss():
        return float(trainer.loss_terms(trainer.model(held_out), held_out, index)["style"])

    untrained = style_loss()
    photos_own = float(trainer.loss_terms(tf.constant(held_out), held_out, index)["style"])
    trainer.train()
    trained = style_loss()
    luma_in = rgb_to_yiq(held_out)[..., :1]
    luma_out = rgb_to_yiq(trainer.model(held_out).numpy())[..., :1]
    ssim = tf.image.ssim(luma_out, luma_in, max_val=1.0).numpy()
    mismatched = tf.image.ssim(luma_out, np.roll(luma_in, 1, axis=0), max_val=1.0).numpy()
    print(
        f"\nstyle loss: untrained net {untrained:.4g}, photos {photos_own:.4g}, trained {trained:.4g}; "
        f"SSIM(luma) {ssim.mean():.3f} (min {ssim.min():.3f}), mismatched {mismatched.mean():.3f}"
    )
    assert trained < 0.5 * untrained and trained < 0.5 * photos_own
    assert ssim.mean() > 0.3 and ssim.mean() > 3 * mismatched.mean()


def test_mixed_precision_multistyle(tmp_path, photos, styles, fixed_photos, eval_dir):
    config = tiny_config(photos, styles[:2], tmp_path, max_steps=2, mixed_precision=True, eval_dir=eval_dir)
    trainer = ff.FeedForwardTrainer(config)
    assert trainer.model.compute_dtype == "bfloat16"  # no GPU here
    result = trainer.train()
    assert np.isfinite(result.metrics["total"])
    # The held-out metrics come from a float32 network of their own, not the 16-bit loss network.
    assert trainer._eval_extractor is not trainer.loss.extractor
    assert trainer._eval_extractor.compute_dtype == "float32"
    assert "style1/ssim_luminance" in result.eval_metrics
    assert all(np.isfinite(value) for value in result.eval_metrics.values())
    reloaded = base.load_trained_model(str(tmp_path))  # inference in float32
    assert reloaded.compute_dtype == "float32"
    assert np.isfinite(reloaded((fixed_photos, tf.constant([0.5, 0.5]))).numpy()).all()
