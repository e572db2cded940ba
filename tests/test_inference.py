"""nst-stylize --model: trained output dirs and exported SavedModels, files and folders."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from feedforward_helpers import REPO, make_photos, make_styles, smooth_image, tiny_config, tiny_train_config
from nst_tf import export, images, inference
from nst_tf.errors import NSTError
from nst_tf.training import base
from nst_tf.training import feedforward as ff

QUANTUM = 1.0 / 255 + 1e-6  # saved images are 8-bit


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    photos = make_photos(root / "photos", count=4)
    styles = make_styles(root / "styles", count=2)
    out = {}
    for name, chosen in (("fast", styles[:1]), ("multi", styles)):
        out[name] = str(root / name)
        ff.FeedForwardTrainer(tiny_train_config(out[name], max_steps=2), tiny_config(photos, chosen)).train()
    return out


@pytest.fixture
def content(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "content"
    for rel, size in (("a.png", (37, 45)), ("b.jpg", (37, 45)), ("c.png", (37, 45)), ("sub/d.png", (50, 33))):
        images.save_image(str(folder / rel), smooth_image(rng, *size))
    return folder


def test_single_image_matches_the_model(tmp_path, runs, content):
    out = tmp_path / "out.png"
    target, count = inference.stylize_files(
        inference.InferenceConfig(model=runs["fast"], content=str(content / "a.png"), output=str(out)), progress=False
    )
    assert (target, count) == (str(out), 1)
    source = images.load_image(str(content / "a.png"))
    expected = base.load_trained_model(runs["fast"])(source[None]).numpy()[0]
    result = images.load_image(str(out))
    assert result.shape == source.shape  # odd sizes come back unchanged
    np.testing.assert_allclose(result, expected, atol=QUANTUM)


def test_folder_batches_mirror_the_layout(tmp_path, runs, content):
    config = inference.InferenceConfig(model=runs["multi"], content=str(content), output=str(tmp_path / "o"),
                                       style_weights=[1, 3], batch_size=2)
    target, count = inference.stylize_files(config, progress=False)
    assert count == 4 and target == str(tmp_path / "o")
    written = sorted(os.path.relpath(os.path.join(d, f), target) for d, _, fs in os.walk(target) for f in fs)
    assert written == ["a.png", "b.jpg", "c.png", os.path.join("sub", "d.png")]
    model = base.load_trained_model(runs["multi"])
    source = images.load_image(str(content / "sub" / "d.png"))
    expected = model((source[None], tf.constant([0.25, 0.75]))).numpy()[0]
    np.testing.assert_allclose(images.load_image(str(tmp_path / "o" / "sub" / "d.png")), expected, atol=QUANTUM)


def test_preserve_color(tmp_path, runs, content):
    plain = inference.stylize_files(inference.InferenceConfig(
        model=runs["fast"], content=str(content / "c.png"), output=str(tmp_path / "plain.png")), progress=False)[0]
    kept = inference.stylize_files(inference.InferenceConfig(
        model=runs["fast"], content=str(content / "c.png"), output=str(tmp_path / "kept.png"),
        preserve_color="luminance"), progress=False)[0]
    expected = images.preserve_color(images.load_image(plain), images.load_image(str(content / "c.png")))
    np.testing.assert_allclose(images.load_image(kept), expected, atol=2 * QUANTUM)


def test_saved_model_gives_the_same_images(tmp_path, runs, content):
    model = base.load_trained_model(runs["multi"])
    module = export.StylizeModule(model, num_styles=model.num_styles)
    tf.saved_model.save(module, str(tmp_path / "export" / "3"), signatures=module.signatures())
    stylizer = inference.Stylizer(str(tmp_path / "export"))  # picks the highest version
    assert stylizer.num_styles == 2
    batch = np.stack([images.load_image(str(content / n)) for n in ("a.png", "c.png")])
    mix = stylizer.style_mix([0.5, 0.5])
    from_checkpoint = inference.Stylizer(runs["multi"])(batch, mix)
    np.testing.assert_allclose(stylizer(batch, mix), from_checkpoint, atol=1e-4)


@pytest.mark.parametrize("run", ["fast", "multi"])
def test_bfloat16_inference_stays_close_to_float32(runs, content, run):
    exact = inference.Stylizer(runs[run])
    fast = inference.Stylizer(runs[run], precision="bfloat16")
    batch = np.stack([images.load_image(str(content / n)) for n in ("a.png", "c.png")])
    mix = exact.style_mix([0.5, 0.5] if run == "multi" else None)
    difference = np.abs(fast(batch, mix) - exact(batch, mix))
    assert difference.max() > 0  # it did compute in bfloat16
    assert difference.mean() < 2 * QUANTUM and difference.max() < 8 * QUANTUM


def test_saved_model_precision_is_fixed(tmp_path, runs):
    model = base.load_trained_model(runs["fast"])
    module = export.StylizeModule(model)
    tf.saved_model.save(module, str(tmp_path / "export" / "1"), signatures=module.signatures())
    with pytest.raises(NSTError, match="--precision: .* is a SavedModel"):
        inference.Stylizer(str(tmp_path / "export"), precision="bfloat16")


def test_bad_inputs(tmp_path, runs, content):
    with pytest.raises(NSTError, match="2 weights for 1 styles|single-style"):
        inference.stylize_files(inference.InferenceConfig(runs["fast"], str(content), style_weights=[1, 1]))
    with pytest.raises(NSTError, match="3 weights for 2 styles"):
        inference.stylize_files(inference.InferenceConfig(runs["multi"], str(content), style_weights=[1, 1, 1]))
    with pytest.raises(NSTError, match="not a training output dir"):
        inference.stylize_files(inference.InferenceConfig(str(tmp_path), str(content)))
    (content / "zz_broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "never"
    with pytest.raises(NSTError, match="zz_broken.png"):
        inference.stylize_files(inference.InferenceConfig(runs["fast"], str(content), output=str(out)), progress=False)
    assert not out.exists()  # nothing written when one input is bad


def test_stylize_command_with_model(tmp_path, runs, content):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "nst_tf.cli.stylize", f"--model={runs['multi']}", f"--content={content}",
         f"--output={tmp_path / 'out'}", "--style_weights=0,1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'out'} 4 images ")
    assert (tmp_path / "out" / "sub" / "d.png").is_file()
