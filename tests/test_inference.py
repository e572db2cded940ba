"""The inference runner: nst-stylize --model (fast and multi-style nets) and nst-translate (CycleGAN
generators), from training output dirs and exported SavedModels, over files and folders."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from feedforward_helpers import REPO
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles
from feedforward_helpers import smooth_image
from feedforward_helpers import tiny_config
from feedforward_helpers import write_training_dir

from nst_tf import export
from nst_tf import images
from nst_tf import inference
from nst_tf.errors import NSTError
from nst_tf.models.cyclegan import ResnetGenerator
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
        ff.train(tiny_config(photos, chosen, out[name], max_steps=2))
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
    config = inference.InferenceConfig(
        model=runs["multi"], content=str(content), output=str(tmp_path / "o"), style_weights=[1, 3], batch_size=2
    )
    target, count = inference.stylize_files(config, progress=False)
    assert count == 4 and target == str(tmp_path / "o")
    written = sorted(os.path.relpath(os.path.join(d, f), target) for d, _, fs in os.walk(target) for f in fs)
    assert written == ["a.png", "b.jpg", "c.png", os.path.join("sub", "d.png")]
    model = base.load_trained_model(runs["multi"])
    source = images.load_image(str(content / "sub" / "d.png"))
    expected = model((source[None], tf.constant([0.25, 0.75]))).numpy()[0]
    np.testing.assert_allclose(images.load_image(str(tmp_path / "o" / "sub" / "d.png")), expected, atol=QUANTUM)


@pytest.mark.parametrize("mode", ["luminance", "output_histogram"])
def test_preserve_color(tmp_path, runs, content, mode):
    kept = inference.stylize_files(
        inference.InferenceConfig(
            model=runs["fast"], content=str(content / "c.png"), output=str(tmp_path / "kept.png"), preserve_color=mode
        ),
        progress=False,
    )[0]
    source = images.load_image(str(content / "c.png"))
    plain = np.clip(base.load_trained_model(runs["fast"])(source[None]).numpy()[0], 0.0, 1.0)
    expected = images.preserve_color(plain, source, mode)
    np.testing.assert_allclose(images.load_image(kept), expected, atol=QUANTUM)
    assert np.abs(expected - plain).mean() > 2 * QUANTUM


def test_preserve_color_histogram_is_refused_with_the_alternative(tmp_path, runs, content):
    with pytest.raises(NSTError, match=r"^--preserve_color=histogram .*use --preserve_color=output_histogram") as info:
        inference.InferenceConfig(
            model=runs["fast"],
            content=str(content / "c.png"),
            output=str(tmp_path / "out.png"),
            preserve_color="histogram",
        )
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.png").exists()


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
        [
            sys.executable,
            "-m",
            "nst_tf.cli.stylize",
            f"--model={runs['multi']}",
            f"--content={content}",
            f"--output={tmp_path / 'out'}",
            "--style_weights=0,1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'out'} 4 images ")
    assert (tmp_path / "out" / "sub" / "d.png").is_file()


def test_one_minimum_side_for_every_net(tmp_path, runs, cyclegan_run):
    """Both commands take inputs down to MIN_INPUT_SIDE px and refuse smaller ones up front."""
    rng = np.random.default_rng(4)
    side = inference.MIN_INPUT_SIDE
    images.save_image(str(tmp_path / "small" / "ok.png"), smooth_image(rng, side, side + 3))
    small = images.load_image(str(tmp_path / "small" / "ok.png"), min_side=side)
    fast = inference.Stylizer(runs["fast"])
    assert fast(small[None], fast.style_mix(None)).shape == (1, side, side + 3, 3)
    inference.translate(
        inference.TranslateConfig(cyclegan_run[0], str(tmp_path / "small"), str(tmp_path / "t")), progress=False
    )
    assert images.load_image(str(tmp_path / "t" / "ok.png"), min_side=1).shape == small.shape

    images.save_image(str(tmp_path / "small" / "tiny.png"), smooth_image(rng, side - 1, 40))
    message = f"tiny.png: image is 40x{side - 1}, smaller than the minimum side of {side} px"
    with pytest.raises(NSTError, match=message):
        inference.stylize_files(
            inference.InferenceConfig(runs["fast"], str(tmp_path / "small"), output=str(tmp_path / "s")), progress=False
        )
    with pytest.raises(NSTError, match=message):
        inference.translate(
            inference.TranslateConfig(cyclegan_run[0], str(tmp_path / "small"), str(tmp_path / "u")), progress=False
        )
    assert not (tmp_path / "s").exists() and not (tmp_path / "u").exists()
    images.save_image(str(tmp_path / "wide.png"), smooth_image(rng, side, 10 * side))
    with pytest.raises(NSTError, match="is 40x4 after shrinking to --max_side=40, smaller than the minimum side"):
        inference.stylize_files(
            inference.InferenceConfig(
                runs["fast"], str(tmp_path / "wide.png"), max_side=40, output=str(tmp_path / "x.png")
            ),
            progress=False,
        )


def test_configs_validate_on_construction(runs, content):
    with pytest.raises(NSTError, match="^--batch_size: "):
        inference.InferenceConfig(runs["fast"], str(content), batch_size=0)
    with pytest.raises(NSTError, match="^--preserve_color: "):
        inference.InferenceConfig(runs["fast"], str(content), preserve_color="sepia")
    with pytest.raises(NSTError, match="^--direction: "):
        inference.TranslateConfig(runs["fast"], str(content), "out", direction="a2a")
    with pytest.raises(NSTError, match="^--format: "):
        inference.TranslateConfig(runs["fast"], str(content), "out", format="webp")


# ------------------------------------------------------------------ CycleGAN generators (nst-translate)


@pytest.fixture(scope="module")
def cyclegan_run(tmp_path_factory):
    """A training output dir holding only generator_a2b, as a --direction=a2b run leaves it."""
    generator = ResnetGenerator(ngf=4, n_blocks=1, name="generator_a2b")
    out = tmp_path_factory.mktemp("cyclegan_model")
    return write_training_dir(out, "cyclegan", {"generator_a2b": generator}), generator


def translated_by(generator, path):
    """What the generator makes of the image file ``path``, in [0, 1]."""
    source = images.load_image(str(path), min_side=1)
    return (generator(source[None] * 2.0 - 1.0).numpy()[0] + 1.0) / 2.0


def run_command(module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_translate_keeps_odd_sizes_and_matches_the_generator(cyclegan_run, tmp_path):
    folder, generator = cyclegan_run
    rng = np.random.default_rng(0)
    inputs = {"odd.png": (37, 45), "tall.png": (61, 22), "sub/same.png": (37, 45)}
    for name, (h, w) in inputs.items():
        images.save_image(str(tmp_path / "in" / name), rng.random((h, w, 3)))
    proc = run_command(
        "nst_tf.cli.translate",
        f"--model={folder}",
        f"--input={tmp_path / 'in'}",
        f"--output={tmp_path / 'out'}",
        "--batch_size=2",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"translated 3 image(s) a2b -> {tmp_path / 'out'}"
    for name, (h, w) in inputs.items():
        out = images.load_image(str(tmp_path / "out" / name), min_side=1)
        assert out.shape == (h, w, 3)
        np.testing.assert_allclose(out, translated_by(generator, tmp_path / "in" / name), atol=QUANTUM)


def test_translate_single_file_and_missing_direction(cyclegan_run, tmp_path):
    folder, _ = cyclegan_run
    images.save_image(str(tmp_path / "one.jpg"), np.full((33, 35, 3), 0.5))
    written = inference.translate(
        inference.TranslateConfig(folder, str(tmp_path / "one.jpg"), str(tmp_path / "o"), format="jpg"), progress=False
    )
    assert written == [str(tmp_path / "o" / "one.jpg")]
    assert images.load_image(written[0]).shape == (33, 35, 3)
    proc = run_command(
        "nst_tf.cli.translate",
        f"--model={folder}",
        "--direction=b2a",
        f"--input={tmp_path / 'one.jpg'}",
        f"--output={tmp_path / 'b'}",
    )
    assert proc.returncode == 1
    assert "has no generator_b2a" in proc.stderr.strip().splitlines()[-1]
    assert not os.path.exists(tmp_path / "b")


def test_translate_reads_every_input_before_writing(cyclegan_run, tmp_path, content):
    (content / "zz_broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "never"
    with pytest.raises(NSTError, match="zz_broken.png"):
        inference.translate(inference.TranslateConfig(cyclegan_run[0], str(content), str(out)), progress=False)
    assert not out.exists()


def test_each_command_takes_only_its_own_nets(runs, cyclegan_run, content, tmp_path):
    with pytest.raises(NSTError, match="a 'cyclegan' model; stylize takes fast or multistyle nets .use nst-translate"):
        inference.stylize_files(inference.InferenceConfig(cyclegan_run[0], str(content)), progress=False)
    with pytest.raises(NSTError, match="a 'fast' model; translate takes nst-train-cyclegan runs .use nst-stylize"):
        inference.translate(inference.TranslateConfig(runs["fast"], str(content), str(tmp_path / "o")), progress=False)


def test_translate_with_an_exported_generator(cyclegan_run, tmp_path, content):
    folder, generator = cyclegan_run
    exported = export.export(
        export.ExportConfig(
            model_type="cyclegan", checkpoint=folder, direction="a2b", export_dir=str(tmp_path / "export")
        )
    )
    written = inference.translate(
        inference.TranslateConfig(str(tmp_path / "export"), str(content / "sub"), str(tmp_path / "o")), progress=False
    )
    assert written == [str(tmp_path / "o" / "d.png")]
    np.testing.assert_allclose(
        images.load_image(written[0]), translated_by(generator, content / "sub" / "d.png"), atol=2 * QUANTUM
    )
    with pytest.raises(NSTError, match=f"--direction: {exported} is the a2b generator"):
        inference.translate(
            inference.TranslateConfig(str(tmp_path / "export"), str(content), str(tmp_path / "b"), direction="b2a"),
            progress=False,
        )
