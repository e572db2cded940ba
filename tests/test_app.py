"""nst-app's logic without a browser or Gradio: uploads, Gatys jobs and their cancel, the nets
it lists and opens, its config. The page itself is tested in tests/test_app_browser.py."""

import dataclasses
import json
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles
from feedforward_helpers import smooth_image
from feedforward_helpers import tiny_arbitrary_config
from feedforward_helpers import tiny_config
from feedforward_helpers import tiny_fast_runs

from nst_tf import images
from nst_tf import inference
from nst_tf.app import AppConfig
from nst_tf.app import default_gatys_concurrency
from nst_tf.app import jobs
from nst_tf.app import models
from nst_tf.errors import NSTError
from nst_tf.training import arbitrary
from nst_tf.training import feedforward as ff

LIMITS = dict(max_side=64, max_megapixels=1.0)


@pytest.fixture(scope="module")
def network():
    return jobs.FeatureNetwork(None)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    return smooth_image(rng, 48, 40), smooth_image(rng, 40, 40)


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    return pathlib.Path(tiny_fast_runs(tmp_path_factory.mktemp("app_fast")))


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory):
    """A two-style net and an arbitrary-style net, and a painting."""
    root = tmp_path_factory.mktemp("app_other")
    photos = make_photos(root / "photos", count=4)
    styles = make_styles(root / "styles", count=2)
    ff.train(tiny_config(photos, styles, root / "runs" / "multi", max_steps=1))
    arbitrary.train(tiny_arbitrary_config(photos, str(root / "styles"), root / "runs" / "adain", max_steps=1))
    return {e.kind: e for e in models.find_models(str(root / "runs"))}, styles[0]


def test_config_defaults_and_bad_values():
    config = AppConfig()
    assert (config.host, config.gatys_concurrency) == ("127.0.0.1", default_gatys_concurrency())
    assert default_gatys_concurrency() >= 1
    with pytest.raises(NSTError, match="--max_megapixels"):
        AppConfig(max_megapixels=0.0)
    with pytest.raises(NSTError, match="--gatys_concurrency"):
        AppConfig(gatys_concurrency=0)


def test_console_script_refuses_a_bad_flag_in_one_line():
    # What the nst-app console script runs: its module imported, not run as __main__.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from nst_tf.cli.app import run; sys.argv[0] = 'nst-app'; run()",
            "--max_megapixels=-1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == "nst-app: error: --max_megapixels: must be > 0, got -1.0\n"


def test_uploads_are_decoded_shrunk_and_refused_in_one_line(tmp_path):
    photo = tmp_path / "big.png"
    images.save_image(photo, smooth_image(np.random.default_rng(1), 100, 80))
    assert jobs.read_image(str(photo), "photo", **LIMITS).shape == (64, 51, 3)
    with pytest.raises(NSTError, match=r"^photo: no image given"):
        jobs.read_image(None, "photo", **LIMITS)
    with pytest.raises(NSTError, match=r"^photo gone\.png: cannot read the upload"):
        jobs.read_image(str(tmp_path / "gone.png"), "photo", **LIMITS)
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture\n")
    with pytest.raises(NSTError, match=r"^painting notes\.jpg: not an image file"):
        jobs.read_image(str(text), "painting", **LIMITS)
    with pytest.raises(images.ImageTooLargeError, match=r"^photo big\.png: "):
        jobs.read_image(str(photo), "photo", max_side=64, max_megapixels=0.005)


def test_gatys_job_streams_previews_then_the_result(network, pair):
    content, style = pair
    config = network.gatys_config(image_size=48, num_steps=20, style_log_ratio=4.0, tv_weight=0.5)
    assert config.loss.style_weight == pytest.approx(1e4 * config.loss.content_weight)
    assert (config.loss.tv_weight, config.log_every) == (0.5, 20 // jobs.PREVIEWS)
    updates = list(jobs.GatysJob(network, content, [style], config))
    previews, result = updates[:-1], updates[-1]
    assert [u.step for u in previews] == list(range(2, 21, 2))
    assert all(u.image.shape == content.shape and not u.final for u in previews)
    assert result.final and not result.cancelled and result.image.shape == content.shape
    assert result.status().startswith("done 20/20  total ")


def test_gatys_job_cancel_ends_it_with_the_last_preview(network, pair):
    content, style = pair
    # A preview every step, so the first comes at once; the run is long enough to be cancelled.
    config = dataclasses.replace(network.gatys_config(image_size=48, num_steps=1000), log_every=1)
    job = jobs.GatysJob(network, content, [style], config)
    updates = []
    for update in job:
        updates.append(update)
        if len(updates) == 1:
            # From another thread, as the cancel button's handler runs.
            threading.Thread(target=job.cancel).start()
    last = updates[-1]
    assert last.cancelled and last.final and not any(u.final for u in updates[:-1])
    # The step it stops at depends on the threads' timing; gatys.stylize's should_stop is
    # tested to stop at once in test_gatys.py.
    assert updates[0].step <= last.step < 1000
    assert last.status() == f"cancelled after step {last.step} of 1000"
    np.testing.assert_array_equal(last.image, updates[-2].image)


def test_gatys_job_closed_early_stops_its_worker(network, pair):
    content, style = pair
    config = dataclasses.replace(network.gatys_config(image_size=48, num_steps=1000), log_every=1)
    job = jobs.GatysJob(network, content, [style], config)
    iterator = iter(job)
    next(iterator)
    iterator.close()  # what Gradio does when the browser goes away
    assert job.cancelled
    assert not any(t.name == "gatys-job" for t in threading.enumerate())


def test_gatys_job_raises_bad_input(network, pair):
    content, style = pair
    with pytest.raises(NSTError, match="image_size"):
        list(jobs.GatysJob(network, content[:20, :20], [style], network.gatys_config(image_size=20, num_steps=2)))


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def test_find_models_lists_runs_and_exports(tmp_path):
    assert models.find_models(str(tmp_path / "absent")) == []
    write_json(tmp_path / "a_fast" / "model_config.json", {"method": "fast", "models": {"model": {}}})
    write_json(
        tmp_path / "b_multi" / "model_config.json",
        {"method": "multistyle", "style_names": ["monet", "vangogh"], "models": {"model": {}}},
    )
    write_json(
        tmp_path / "group" / "c_gan" / "model_config.json",
        {"method": "cyclegan", "models": {"generator_a2b": {}, "generator_b2a": {}, "discriminator_a": {}}},
    )
    write_json(tmp_path / "d_gatys_sweep" / "model_config.json", {"method": "sweep"})
    version = tmp_path / "export" / "zebra" / "3"
    write_json(version / "assets.extra" / "nst_tf.json", {"model_type": "cyclegan", "direction": "b2a"})
    (version / "saved_model.pb").write_bytes(b"")
    write_json(tmp_path / "export" / "vgg" / "1" / "assets.extra" / "nst_tf.json", {"model_type": "features"})
    (tmp_path / "export" / "vgg" / "1" / "saved_model.pb").write_bytes(b"")
    # A net's own folders are not searched: a run's exported copy inside it is the same net.
    write_json(tmp_path / "a_fast" / "inner" / "model_config.json", {"method": "fast"})

    found = {e.name: e for e in models.find_models(str(tmp_path))}
    assert sorted(found) == ["a_fast", "b_multi", "export/zebra", "group/c_gan"]
    assert found["a_fast"].label == "a_fast (fast)"
    assert found["b_multi"].style_names == ("monet", "vangogh")
    assert found["group/c_gan"].directions == ("a2b", "b2a")
    zebra = found["export/zebra"]
    assert (zebra.kind, zebra.exported, zebra.directions) == ("cyclegan", True, ("b2a",))
    assert zebra.label == "export/zebra (cyclegan, SavedModel)"


def test_a_fast_net_gives_nst_stylizes_pixels_and_opens_once(fast_run, tmp_path):
    (entry,) = models.find_models(str(fast_run))
    cache = models.StylizerCache(size=1)
    content = smooth_image(np.random.default_rng(2), 37, 45)
    output = jobs.stylize_with_net(entry, cache, content)
    assert cache.get(entry) is cache.get(entry)

    source, target = tmp_path / "photo.png", tmp_path / "out.png"
    images.save_image(source, content)
    inference.stylize_files(inference.InferenceConfig(model=entry.path, content=str(source), output=str(target)))
    photo = images.load_image(source, min_side=1)
    np.testing.assert_allclose(
        images.to_uint8(jobs.stylize_with_net(entry, cache, photo)), images.to_uint8(images.load_image(target)), atol=1
    )
    assert output.shape == content.shape


def test_missing_model_and_weights_of_a_single_style_net_are_refused(fast_run, tmp_path):
    (entry,) = models.find_models(str(fast_run))
    cache = models.StylizerCache()
    content = smooth_image(np.random.default_rng(3), 40, 40)
    with pytest.raises(NSTError, match="single-style"):
        jobs.stylize_with_net(entry, cache, content, style_weights=[0.5, 0.5])
    gone = models.ModelEntry("gone", str(tmp_path / "gone"), "fast")
    with pytest.raises(NSTError, match=r"^model gone: .* is gone"):
        jobs.stylize_with_net(gone, cache, content)
    arbitrary = models.ModelEntry("adain", str(tmp_path), "arbitrary")
    with pytest.raises(NSTError, match="needs a painting"):
        jobs.stylize_with_net(arbitrary, cache, content)


def test_multistyle_weights_and_arbitrary_alpha_reach_the_nets(other_runs):
    entries, painting = other_runs
    cache = models.StylizerCache()
    content = smooth_image(np.random.default_rng(4), 40, 40)
    multi = entries["multistyle"]
    assert len(multi.style_names) == 2
    first = jobs.stylize_with_net(multi, cache, content, style_weights=[1.0, 0.0])
    assert np.array_equal(first, jobs.stylize_with_net(multi, cache, content))  # the default: the first style
    assert not np.allclose(first, jobs.stylize_with_net(multi, cache, content, style_weights=[0.0, 1.0]))
    adain = entries["arbitrary"]
    full = jobs.stylize_with_net(adain, cache, content, style_path=painting, alpha=1.0)
    none = jobs.stylize_with_net(adain, cache, content, style_path=painting, alpha=0.0)
    assert full.shape == none.shape == content.shape and not np.allclose(full, none)


def test_metrics_caption(network, pair):
    content, style = pair
    metrics = network.metrics(content, content, style)
    caption = jobs.metrics_caption("Gatys", metrics)
    assert caption.startswith("Gatys: style ")
    assert all(heading in caption for _, heading in jobs.COMPARE_METRICS)
