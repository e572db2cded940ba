"""The web app's overhead: a stylization through nst-app's HTTP API against the library call.

Issue 19 asks that the app's Trained nets tab give results "in about the time of one forward
pass". This measures how close it comes. In one process:

* a real-size fast net (the full TransformNet at ``--width``, trained one step on the sample
  photo with random-weight loss features: the cost does not depend on the weights) in a
  temporary ``--models_dir``, and nst-app serving it on 127.0.0.1 at a free port;
* per photo side (the sample ``rocket.jpg`` resized so its longest side is 256 and 512 px,
  saved as JPEG):

  - **direct**: :class:`nst_tf.inference.Stylizer` on the decoded photo, the forward pass alone;
  - **handler**: the app's own handler called in process (read and decode the upload, the
    forward pass, convert to uint8), no HTTP;
  - **HTTP**: the same stylization through the app's API with ``gradio_client``, end to end:
    upload the JPEG, queue, run, download the PNG result, which is checked to equal the
    direct result within 1/255;

  each the best of ``--repeats`` after ``--warmup`` calls. Printed: HTTP/direct and
  handler/direct, with HTTP - direct in ms as context;
* with ``--gatys_steps`` > 0, the same for the Gatys tab at ``--gatys_size`` px (random VGG19
  features, as the tests run it): :func:`nst_tf.gatys.stylize` against the tab's streaming
  endpoint (previews every tenth of the steps included).

Seconds are only the context of each line; the figure is the ratio, measured in the same run.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/app.py [--sizes=256,512] [--repeats=5] [--warmup=1]
"""

import contextlib
import io
import logging
import os
import pathlib
import sys
import tempfile

import numpy as np
import portpicker
import tensorflow as tf
from absl import app
from absl import flags
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import best_time  # noqa: E402
from nst_tf import gatys  # noqa: E402
from nst_tf import images  # noqa: E402
from nst_tf.app import jobs  # noqa: E402
from nst_tf.data import PhotoDataConfig  # noqa: E402
from nst_tf.errors import NSTError  # noqa: E402
from nst_tf.losses import LossConfig  # noqa: E402
from nst_tf.training import feedforward as ff  # noqa: E402

flags.DEFINE_list("sizes", ["256", "512"], "Longest sides of the photo in pixels.")
flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (the best is reported).", lower_bound=1)
flags.DEFINE_integer("warmup", 1, "Untimed calls before each measurement.", lower_bound=0)
flags.DEFINE_float("width", 1.0, "TransformNet width multiplier of the fast net.")
flags.DEFINE_integer("gatys_steps", 10, "Gatys tab: L-BFGS iterations per run (0: skip the Gatys tab).", lower_bound=0)
flags.DEFINE_integer("gatys_size", 128, "Gatys tab: image size in pixels.", lower_bound=64)
FLAGS = flags.FLAGS


def sample_photo(folder, side):
    """The sample photo, longest side ``side``, as a JPEG file (what a user uploads)."""
    photo = Image.open(images.SAMPLE_CONTENT).convert("RGB")
    scale = side / max(photo.size)
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
    path = os.path.join(folder, f"rocket_{side}.jpg")
    photo.save(path, quality=90)
    return path


def train_fast_net(folder):
    """A full-size fast net trained one step (random loss features), under ``folder/runs/fast``."""
    photos = os.path.join(folder, "photos")
    os.makedirs(photos)
    for side in (96, 112):
        sample_photo(photos, side)
    config = ff.FeedForwardConfig(
        output_dir=os.path.join(folder, "runs", "fast"),
        style_images=[str(images.SAMPLE_STYLE)],
        data=PhotoDataConfig(train_dir=photos, image_size=64),
        loss=LossConfig.johnson(weights=None),
        style_size=64,
        width=FLAGS.width,
        batch_size=1,
        max_steps=1,
        checkpoint_every=1,
        log_every=1,
        image_every=0,
    )
    with contextlib.redirect_stderr(io.StringIO()):  # the trainer's progress bar
        ff.train(config)
    return os.path.join(folder, "runs")


def line(label, seconds):
    print(f"{label:40s} {seconds * 1e3:9.1f} ms  (best of {FLAGS.repeats})", flush=True)
    return seconds


def ratios(label, direct, handler, http):
    if handler is not None:
        print(f"{label}: handler / direct = {handler / direct:.2f}x  ({(handler - direct) * 1e3:+.1f} ms)")
    print(f"{label}: HTTP / direct = {http / direct:.2f}x  ({(http - direct) * 1e3:+.1f} ms)", flush=True)


def bench_net(app_, client, entry, folder, side):
    """The Trained nets tab on a ``side`` px photo: direct forward pass, handler, HTTP."""
    from gradio_client import handle_file  # pylint: disable=import-outside-toplevel

    path = sample_photo(folder, side)
    photo = jobs.read_image(path, "photo", app_.config.max_side, app_.config.max_megapixels)
    stylizer = app_.cache.get(entry)
    mix = stylizer.style_mix(None)
    inference_input = photo[np.newaxis]
    # The handler's arguments: net, photo, painting, alpha, direction, colour, one style slider each.
    sliders = [1.0] * app_.max_styles()
    handler_args = (entry.label, {"path": path}, None, 1.0, "a2b", "none", *sliders)
    http_args = (entry.label, handle_file(path), None, 1.0, "a2b", "none", *sliders)
    results = {}

    def over_http():
        results["http"] = client.predict(*http_args, api_name="/run_net")

    name = f"fast net {photo.shape[1]}x{photo.shape[0]}"
    direct = line(
        f"{name} direct forward",
        best_time(lambda: stylizer(inference_input, mix), FLAGS.repeats, FLAGS.warmup),
    )
    handler = line(
        f"{name} app handler (no HTTP)",
        best_time(lambda: app_.run_net(*handler_args), FLAGS.repeats, FLAGS.warmup),
    )
    http = line(f"{name} gradio_client HTTP", best_time(over_http, FLAGS.repeats, FLAGS.warmup))
    # The HTTP path must have stylized the photo, not answered an error page or a resized copy.
    served = images.load_image(results["http"], min_side=1)
    expected = stylizer(inference_input, mix)[0]
    if served.shape != expected.shape or np.abs(served - expected).max() > 1.0 / 255 + 1e-6:
        raise NSTError(f"{name}: the app's result differs from the direct forward pass")
    ratios(name, direct, handler, http)


def bench_gatys(app_, client, folder):
    """The Gatys tab: gatys.stylize on the app's feature network against the streaming endpoint."""
    from gradio_client import handle_file  # pylint: disable=import-outside-toplevel

    content, style = sample_photo(folder, 256), str(images.SAMPLE_STYLE)
    read = app_.config.max_side, app_.config.max_megapixels
    photo, painting = jobs.read_image(content, "photo", *read), jobs.read_image(style, "painting", *read)
    config = app_.network.gatys_config(image_size=FLAGS.gatys_size, num_steps=FLAGS.gatys_steps)
    args = (handle_file(content), handle_file(style), None, 0.5, FLAGS.gatys_size, FLAGS.gatys_steps, 3.0, 0.0, "none")
    name = f"Gatys {FLAGS.gatys_size} px {FLAGS.gatys_steps} steps"
    direct = line(
        f"{name} gatys.stylize",
        best_time(
            lambda: gatys.stylize(photo, painting, config, extractor=app_.network.model), FLAGS.repeats, FLAGS.warmup
        ),
    )
    http = line(
        f"{name} gradio_client HTTP",
        best_time(lambda: client.predict(*args, api_name="/run_gatys"), FLAGS.repeats, FLAGS.warmup),
    )
    ratios(name, direct, None, http)


def main(argv):
    del argv
    # Each request's INFO line (httpx, under absl's logging) would bury the results.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sizes = [int(s) for s in FLAGS.sizes]
    with tempfile.TemporaryDirectory(prefix="nst_bench_app_") as folder:
        # Gradio's uploads and results go here, not to the machine's shared /tmp/gradio.
        os.environ["GRADIO_TEMP_DIR"] = os.path.join(folder, "gradio")
        try:
            import gradio  # pylint: disable=import-outside-toplevel
            from gradio_client import Client  # pylint: disable=import-outside-toplevel

            from nst_tf.app import AppConfig  # pylint: disable=import-outside-toplevel
            from nst_tf.app import ui  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            raise SystemExit(f"bench/app.py: {exc.name} is not installed: pip install -e '.[app]'") from None
        models_dir = train_fast_net(folder)
        config = AppConfig(
            port=portpicker.pick_unused_port(), models_dir=models_dir, weights=None, max_side=max(sizes + [256])
        )
        app_ = ui.App(config)
        (entry,) = app_.models
        print(
            f"nst-app on 127.0.0.1 (gradio {gradio.__version__}), fast net width {FLAGS.width}, "
            f"TF {tf.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        page = ui.launch(app_, block=False)
        try:
            client = Client(
                page.local_url, verbose=False, download_files=os.path.join(folder, "downloads"), analytics_enabled=False
            )
            for side in sizes:
                bench_net(app_, client, entry, folder, side)
            if FLAGS.gatys_steps:
                bench_gatys(app_, client, folder)
        finally:
            with contextlib.redirect_stdout(io.StringIO()):  # Gradio's "Closing server" line
                page.close()


if __name__ == "__main__":
    app.run(main)
