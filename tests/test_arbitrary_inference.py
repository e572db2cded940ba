"""nst-stylize --model with an arbitrary-style (AdaIN) run: paintings, alpha, mixes, masks, colour
preservation and bad input, through the one inference runner, on a tiny trained run."""

import os
import sys

import numpy as np
import pytest
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles
from feedforward_helpers import run_command
from feedforward_helpers import smooth_image
from feedforward_helpers import tiny_arbitrary_config
from feedforward_helpers import tiny_config

from nst_tf import images
from nst_tf import inference
from nst_tf.errors import NSTError
from nst_tf.models.arbitrary import StyleVector
from nst_tf.training import arbitrary
from nst_tf.training import base
from nst_tf.training import feedforward as ff

QUANTUM = 1.0 / 255 + 1e-6  # saved images are 8-bit


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("arbitrary")
    photos = make_photos(root / "photos", count=4)
    make_styles(root / "paintings", count=3)
    # Enough steps for outputs with contrast, so that 8-bit files tell the controls apart.
    arbitrary.train(tiny_arbitrary_config(photos, str(root / "paintings"), root / "run", max_steps=40))
    return str(root / "run")


@pytest.fixture(scope="module")
def model(run):
    return base.load_trained_model(run)


@pytest.fixture(scope="module")
def paintings(tmp_path_factory):
    return make_styles(tmp_path_factory.mktemp("held_out"), count=2, seed=7)


@pytest.fixture
def content(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "content"
    for rel, size in (("a.png", (37, 45)), ("b.jpg", (37, 45)), ("sub/c.png", (50, 33))):
        images.save_image(str(folder / rel), smooth_image(rng, *size))
    return folder


def stylize(run, content, output, **kwargs):
    config = inference.InferenceConfig(model=run, content=str(content), output=str(output), **kwargs)
    return inference.stylize_files(config, progress=False)


def vector(model, path, style_size=512):
    return model.style_vector(images.load_image(path, max_side=style_size)[np.newaxis])


def test_one_photo_in_one_painting_matches_the_model(tmp_path, run, model, content, paintings):
    target, count = stylize(run, content / "a.png", tmp_path / "out.png", style_images=paintings[:1], style_size=40)
    assert (target, count) == (str(tmp_path / "out.png"), 1)
    source = images.load_image(str(content / "a.png"))
    expected = model.stylize(source[None], vector(model, paintings[0], 40)).numpy()[0]
    result = images.load_image(target)
    assert result.shape == source.shape  # odd sizes come back unchanged
    np.testing.assert_allclose(result, expected, atol=QUANTUM)


def test_a_folder_mirrors_the_layout_with_alpha(tmp_path, run, model, content, paintings):
    target, count = stylize(run, content, tmp_path / "o", style_images=paintings[:1], alpha=0.6, batch_size=2)
    assert count == 3
    written = sorted(os.path.relpath(os.path.join(d, f), target) for d, _, fs in os.walk(target) for f in fs)
    assert written == ["a.png", "b.jpg", os.path.join("sub", "c.png")]
    source = images.load_image(str(content / "sub" / "c.png"))
    expected = model.stylize(source[None], vector(model, paintings[0]), alpha=0.6).numpy()[0]
    np.testing.assert_allclose(images.load_image(str(tmp_path / "o" / "sub" / "c.png")), expected, atol=QUANTUM)


def test_alpha_zero_is_the_decoded_photo(tmp_path, run, model, content, paintings):
    target, _ = stylize(run, content / "a.png", tmp_path / "zero.png", style_images=paintings[:1], alpha=0.0)
    source = images.load_image(str(content / "a.png"))
    padded = np.pad(source, [(0, 3), (0, 3), (0, 0)], mode="reflect")  # 37x45 -> 40x48 (multiple of 8)
    decoded = np.clip(model.decode(model.encode(padded[None])).numpy()[0, :37, :45], 0, 1)
    np.testing.assert_allclose(images.load_image(target), decoded, atol=QUANTUM)


def test_style_weights_mix_the_paintings_and_one_zero_is_the_one_painting(tmp_path, run, model, content, paintings):
    one = stylize(run, content / "a.png", tmp_path / "one.png", style_images=paintings[:1])[0]
    pair = stylize(run, content / "a.png", tmp_path / "pair.png", style_images=paintings, style_weights=[1.0, 0.0])[0]
    np.testing.assert_array_equal(images.load_image(pair), images.load_image(one))
    mixed = stylize(run, content / "a.png", tmp_path / "mixed.png", style_images=paintings)[0]  # equal by default
    both = StyleVector.concat([vector(model, p) for p in paintings])
    source = images.load_image(str(content / "a.png"))
    expected = model.stylize(source[None], both.blend([0.5, 0.5])).numpy()[0]
    np.testing.assert_allclose(images.load_image(mixed), expected, atol=QUANTUM)
    with pytest.raises(NSTError, match=r"^--style_weights: 3 weights for 2 --style paintings$"):
        stylize(run, content, tmp_path / "x", style_images=paintings, style_weights=[1, 1, 1])


def test_a_mask_gives_the_foreground_and_background_their_paintings(tmp_path, run, model, paintings):
    rng = np.random.default_rng(1)
    photo = smooth_image(rng, 40, 48)
    images.save_image(str(tmp_path / "photo.png"), photo)
    mask = np.zeros((40, 48, 3), np.float32)
    mask[:, :24] = 1.0
    images.save_image(str(tmp_path / "mask.png"), mask)
    target, _ = stylize(
        run, tmp_path / "photo.png", tmp_path / "out.png", style_images=paintings, mask=str(tmp_path / "mask.png")
    )
    photo = images.load_image(str(tmp_path / "photo.png"))
    fg, bg = (vector(model, p) for p in paintings)
    expected = model.stylize(photo[None], fg, mask=mask[None, :, :, :1], background=bg).numpy()[0]
    np.testing.assert_allclose(images.load_image(target), expected, atol=QUANTUM)
    plain = model.stylize(photo[None], fg).numpy()[0]
    assert np.abs(expected[:, 24:] - plain[:, 24:]).mean() > 2 * QUANTUM  # the background took the other painting


def test_histogram_colour_preservation_recolours_the_paintings_per_photo(tmp_path, run, model, content, paintings):
    target, _ = stylize(
        run, content / "a.png", tmp_path / "kept.png", style_images=paintings[:1], preserve_color="histogram"
    )
    source = images.load_image(str(content / "a.png"))
    painting = images.recolor_style(images.load_image(paintings[0], max_side=512), source, "histogram")
    expected = model.stylize(source[None], model.style_vector(painting[None])).numpy()[0]
    np.testing.assert_allclose(images.load_image(target), expected, atol=QUANTUM)
    plain = stylize(run, content / "a.png", tmp_path / "plain.png", style_images=paintings[:1])[0]
    assert np.abs(images.load_image(plain) - expected).mean() > 2 * QUANTUM
    luminance = stylize(
        run, content / "a.png", tmp_path / "y.png", style_images=paintings[:1], preserve_color="luminance"
    )
    np.testing.assert_allclose(
        images.load_image(luminance[0]),
        images.preserve_color(images.load_image(plain), source, "luminance"),
        atol=2 * QUANTUM,
    )


def test_a_saved_style_vector_is_the_painting(tmp_path, model, paintings):
    """What a server caches: the vector file gives the image the painting gives."""
    photo = smooth_image(np.random.default_rng(2), 40, 48)[None]
    painting = images.load_image(paintings[1])[None]
    model.style_vector(painting).save(tmp_path / "v.npz", model.encoder_id)
    cached = StyleVector.load(tmp_path / "v.npz", model.encoder_id)
    np.testing.assert_array_equal(model.stylize(photo, cached), model((photo, painting)))


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, run, content, paintings):
    out = tmp_path / "never"
    cases = [
        (dict(), r"^--style: .* is an arbitrary-style model: give the painting\(s\) to stylize with$"),
        (dict(style_images=[str(tmp_path / "missing.jpg")]), r"missing.jpg: no such file$"),
        (
            dict(style_images=[paintings[0], paintings[1]], mask=str(tmp_path / "mask.png")),
            r"--mask: .*mask.png is 20x10",
        ),
    ]
    images.save_image(str(tmp_path / "mask.png"), np.ones((10, 20, 3), np.float32))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    cases.append((dict(style_images=[str(tmp_path / "broken.jpg")]), r"broken.jpg: "))
    for kwargs, message in cases:
        with pytest.raises(NSTError, match=message) as info:
            stylize(run, content, out, **kwargs)
        assert "\n" not in str(info.value)
    (content / "zz_broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(NSTError, match="zz_broken.png"):
        stylize(run, content, out, style_images=paintings[:1])
    assert not out.exists()
    with pytest.raises(NSTError, match=r"^--mask: needs two --style paintings"):
        inference.InferenceConfig(run, str(content), style_images=paintings[:1], mask=str(tmp_path / "mask.png"))
    with pytest.raises(NSTError, match=r"^--alpha: must be in \[0, 1\]"):
        inference.InferenceConfig(run, str(content), style_images=paintings[:1], alpha=1.5)


def test_the_arbitrary_net_takes_inputs_from_16_px(tmp_path, run, paintings):
    rng = np.random.default_rng(4)
    images.save_image(str(tmp_path / "ok.png"), smooth_image(rng, 16, 19))
    target, _ = stylize(run, tmp_path / "ok.png", tmp_path / "out.png", style_images=paintings[:1])
    assert images.load_image(target, min_side=16).shape == (16, 19, 3)
    images.save_image(str(tmp_path / "small.png"), smooth_image(rng, 12, 40))
    with pytest.raises(NSTError, match="small.png: image is 40x12, smaller than the minimum side of 16 px"):
        stylize(run, tmp_path / "small.png", tmp_path / "x.png", style_images=paintings[:1])


def test_a_fixed_style_net_refuses_the_arbitrary_controls(tmp_path, content, paintings):
    photos = make_photos(tmp_path / "photos", count=2)
    ff.train(tiny_config(photos, paintings[:1], tmp_path / "fast", max_steps=1))
    for kwargs, flag in ((dict(style_images=paintings[:1]), "--style"), (dict(alpha=0.5), "--alpha")):
        with pytest.raises(NSTError, match=f"^{flag}: .* is a net with trained styles; {flag} needs an arbitrary"):
            stylize(str(tmp_path / "fast"), content, tmp_path / "x", **kwargs)


def test_an_exported_arbitrary_model_is_refused_with_the_way_to_use_it(tmp_path, content, paintings):
    exported = tmp_path / "export" / "1"
    (exported / "assets.extra").mkdir(parents=True)
    (exported / "saved_model.pb").write_bytes(b"not read")
    (exported / "assets.extra" / "nst_tf.json").write_text('{"model_type": "arbitrary"}')
    with pytest.raises(NSTError, match="^--model: .* is an exported arbitrary-style SavedModel; give nst-stylize its"):
        stylize(str(tmp_path / "export"), content, tmp_path / "x", style_images=paintings[:1])


def run_stylize(*args):
    return run_command([sys.executable, "-m", "nst_tf.cli.stylize", *args])


def test_stylize_command_with_an_arbitrary_run(tmp_path, run, content, paintings):
    done = run_stylize(
        f"--model={run}",
        f"--content={content}",
        f"--style={paintings[0]}",
        f"--style={paintings[1]}",
        "--style_weights=3,1",
        "--alpha=0.7",
        f"--output={tmp_path / 'out'}",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'out'} 3 images ")
    assert images.load_image(str(tmp_path / "out" / "sub" / "c.png")).shape == (50, 33, 3)

    images.save_image(str(tmp_path / "mask.png"), np.ones((10, 20, 3), np.float32))
    bad = run_stylize(
        f"--model={run}",
        f"--content={content / 'a.png'}",
        f"--style={paintings[0]}",
        f"--style={paintings[1]}",
        f"--mask={tmp_path / 'mask.png'}",
        f"--output={tmp_path / 'bad.png'}",
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        f"stylize.py: error: --mask: {tmp_path / 'mask.png'} is 20x10 but {content / 'a.png'} is 45x37 "
        "(the mask must have the content image's size)"
    )
    assert not (tmp_path / "bad.png").exists()
