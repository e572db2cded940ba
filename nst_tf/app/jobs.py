"""What the app's buttons do, without Gradio: read uploads, run Gatys jobs that can be
watched and cancelled, apply trained nets, and measure results for the Compare tab."""

import dataclasses
import math
import os
import queue
import threading
from typing import Optional

import numpy as np

from nst_tf import config as config_lib
from nst_tf import evaluation
from nst_tf import gatys
from nst_tf import images
from nst_tf import inference
from nst_tf import losses
from nst_tf import weights
from nst_tf.errors import NSTError

# The Gatys tab's quick settings; every other field keeps GatysConfig's default.
GATYS_DEFAULTS = gatys.GatysConfig(image_size=256, num_steps=100)
# The style strength slider's scale, log10 β/α, and its starting value (the defaults').
DEFAULT_STYLE_LOG_RATIO = math.log10(GATYS_DEFAULTS.loss.style_weight / GATYS_DEFAULTS.loss.content_weight)
# Previews per run: often enough to watch, rare enough to cost little (each reads the image back).
PREVIEWS = 10
# Compare tab metrics: (nst-eval name, heading).
COMPARE_METRICS = (
    ("style_gram_ratio", "style"),
    ("content_ratio", "content"),
    ("ssim_luminance", "SSIM"),
    ("color_to_style", "colour→style"),
)


def read_image(path, what, max_side, max_megapixels):
    """An uploaded image file as float32 [H, W, 3] in [0, 1], shrunk to ``max_side`` when larger.

    Decoded by :func:`nst_tf.images.decode_image_bytes`, as every command reads images,
    with errors that name ``what`` and the file as the user knows it (not the upload's
    temporary path). Raises :class:`NSTError` for no file, a non-image, or more than
    ``max_megapixels`` (from the header, before decoding).
    """
    if not path:
        raise NSTError(f"{what}: no image given (upload one, or click an example)")
    name = f"{what} {os.path.basename(path)}"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise images.ImageError(f"{name}: cannot read the upload ({exc.strerror or exc}); upload it again") from None
    image = images.decode_image_bytes(data, name=name, max_pixels=int(max_megapixels * 1e6))
    if max(image.shape[:2]) > max_side:
        image = images.resize_longest_side(image, max_side)
    return image


class FeatureNetwork:
    """The app's Gatys feature network, built once: ``options`` (a GatysConfig naming its
    weights), the Keras ``model`` and a ``line`` saying which weights it holds."""

    def __init__(self, weights_value, feature_extractor="auto"):
        extractor = weights.choose_extractor(weights_value, feature_extractor)
        options = config_lib.replace(GATYS_DEFAULTS, weights=weights_value, feature_extractor=extractor)
        self.options, self.model, self.line = weights.gatys_extractor(options, feature_extractor == "auto")

    def gatys_config(
        self,
        *,
        image_size,
        num_steps,
        style_log_ratio=DEFAULT_STYLE_LOG_RATIO,
        tv_weight=GATYS_DEFAULTS.loss.tv_weight,
        **fields,
    ):
        """A GatysConfig for this network, β/α = 10^``style_log_ratio`` (the paper's 1e3 at 3)."""
        loss = dataclasses.replace(
            self.options.loss,
            style_weight=self.options.loss.content_weight * 10.0**style_log_ratio,
            tv_weight=tv_weight,
        )
        num_steps = int(num_steps)
        return dataclasses.replace(
            self.options,
            image_size=int(image_size),
            num_steps=num_steps,
            loss=loss,
            log_every=max(1, num_steps // PREVIEWS),
            **fields,
        )

    def metrics(self, output, content, style):
        """nst-eval's metrics of ``output`` on this network and the Gatys layers."""
        loss = self.options.loss
        eval_config = evaluation.EvalConfig(
            feature_extractor=loss.feature_extractor, weights=loss.weights, pooling=loss.pooling, max_side=0
        )
        return evaluation.evaluate(output, content, style, config=eval_config, extractor=self.model)


@dataclasses.dataclass
class Update:
    """One report of a :class:`GatysJob`: a preview (``final`` False) or the result.

    ``cancelled`` is set on the last report of a cancelled job, whose ``image`` is the last preview.
    """

    step: int
    total: int
    image: Optional[np.ndarray]
    losses: dict
    final: bool = False
    cancelled: bool = False

    def status(self):
        terms = "  ".join(f"{name} {value:.4g}" for name, value in losses.summary(self.losses).items())
        if self.cancelled:
            return f"cancelled after step {self.step} of {self.total}"
        return f"{'done' if self.final else 'step'} {self.step}/{self.total}  {terms}".rstrip()


class GatysJob:
    """One Gatys optimisation in a worker thread; iterate it for :class:`Update` reports.

    :meth:`cancel` (from any thread) stops the optimisation within one step
    (:func:`nst_tf.gatys.stylize`'s ``should_stop``); the iteration then ends with a
    ``cancelled`` update. Closing the iteration early (a browser gone) cancels too.
    Errors of the run (:class:`NSTError`) are raised by the iteration.
    """

    def __init__(self, network, content, styles, config):
        self.network = network
        self.content = content
        self.styles = styles
        self.config = config
        self._stop = threading.Event()
        self._reports = queue.Queue()

    def cancel(self):
        self._stop.set()

    @property
    def cancelled(self):
        return self._stop.is_set()

    def _run(self):
        try:
            result = gatys.stylize(
                self.content,
                self.styles,
                self.config,
                extractor=self.network.model,
                on_step=lambda done, total, image, values: self._reports.put(Update(done, total, image, values)),
                should_stop=self._stop.is_set,
            )
            self._reports.put(("result", result))
        except gatys.Cancelled as exc:
            self._reports.put(("cancelled", exc.step))
        except Exception as exc:  # handed to the iterating thread, which raises it
            self._reports.put(("error", exc))

    def __iter__(self):
        total = self.config.total_steps()
        worker = threading.Thread(target=self._run, name="gatys-job", daemon=True)
        worker.start()
        last = Update(0, total, None, {})
        try:
            while True:
                report = self._reports.get()
                if isinstance(report, Update):
                    last = report
                    yield report
                    continue
                kind, value = report
                if kind == "error":
                    raise value
                if kind == "cancelled":
                    yield dataclasses.replace(last, step=value, final=True, cancelled=True)
                else:
                    yield dataclasses.replace(last, image=value, final=True)
                return
        finally:
            self._stop.set()
            worker.join()


def stylize_with_net(
    entry,
    cache,
    content,
    *,
    style_weights=None,
    style_path=None,
    alpha=1.0,
    direction=None,
    preserve_color="none",
    max_side=1024,
):
    """``content`` ([H, W, 3] in [0, 1]) through the net of ``entry`` (a :class:`~.models.ModelEntry`).

    As ``nst-stylize --model`` (or ``nst-translate``) does it: the same stylizers and the
    same steps, so the same pixels. An arbitrary-style net is opened per call with its
    painting ``style_path``; the other nets come from ``cache``.
    """
    if entry.kind == "arbitrary":
        if not style_path:
            raise NSTError(f"model {entry.name}: an arbitrary-style net needs a painting (upload one)")
        stylizer = inference.ArbitraryStylizer(
            entry.path, [style_path], alpha=alpha, max_side=max_side, preserve_color=preserve_color
        )
        mix = stylizer.style_mix(None)
    else:
        stylizer = cache.get(entry, direction if entry.kind == "cyclegan" else None)
        mix = stylizer.style_mix(style_weights)
    if min(content.shape[:2]) < stylizer.min_side:
        raise NSTError(
            f"photo: {content.shape[1]}x{content.shape[0]} is below the net's {stylizer.min_side} px minimum side"
        )
    return images.preserve_color(stylizer(content[np.newaxis], mix)[0], content, mode=preserve_color)


def metrics_caption(method, metrics):
    """One line of ``method`` and the :data:`COMPARE_METRICS` of its result."""
    return f"{method}: " + ", ".join(f"{heading} {metrics[name]:.3g}" for name, heading in COMPARE_METRICS)
