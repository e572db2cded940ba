"""Gatys et al. optimisation-based style transfer.

Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural
Networks" (CVPR 2016) synthesise an image x by minimising, over its pixels,

    L(x) = α L_content(p, x) + β L_style(a, x) + λ_tv TV(x) + λ_lap L_lap(p, x)

where p is the content photograph, a the artwork (or a blend of several
artworks' Gram matrices), L_content = ½ Σ (F^l - P^l)² at the content layers,
L_style = Σ_l w_l 1/(4 N_l²) Σ (Ĝ^l - Â^l)² over the style layers with
per-position Grams Ĝ = FᵀF/M (eq. 4 when the style image has the output's size),
TV the total variation and L_lap the Laplacian loss of Li et al. 2017. The loss
is :class:`nst_tf.losses.PerceptualLoss`, shared with the other methods (see
:mod:`nst_tf.losses` for every formula); the feature maps come from a frozen
ImageNet network (:mod:`nst_tf.features`).

The pieces, from the inside out:

* :class:`StyleTransferObjective` / :func:`make_objective`: the loss above against
  one content and style, as a reusable ``tf.Module`` with a ``tf.function``
  ``value_and_gradient``; content features and style Grams are computed once.
* :func:`optimize`: L-BFGS (:mod:`nst_tf.lbfgs`) or Adam/AdamW with learning-rate
  schedules, pixels kept in [0, 1].
* :func:`stylize`: the whole pipeline: loading, colour preservation,
  initialisation, coarse-to-fine scales, checkpoints, TensorBoard logs.
"""

import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
import zipfile
from typing import Callable
from typing import Optional
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from nst_tf import evaluation
from nst_tf import fileio
from nst_tf import images
from nst_tf import lbfgs
from nst_tf import losses
from nst_tf import schedules
from nst_tf.config import check_fields
from nst_tf.config import option
from nst_tf.errors import NSTError
from nst_tf.errors import first_line
from nst_tf.precision import PRECISIONS

OPTIMIZERS = ("lbfgs", "adam", "adamw")
LR_SCHEDULES = ("constant", "step", "exponential", "plateau")
INITS = ("content", "noise", "style", "blend")

CHECKPOINT_FILE = "checkpoint.npz"


def default_loss():
    """``nst-stylize``'s loss: the paper's network, layers and units with β = 1e4 and TV 300.

    Both were chosen with ``bench/quality.py`` (docs/pages/benchmarks.md, "Picture
    quality"): at the paper's β = 1e3 and no TV, the outputs kept 8x more of the photo
    than the tutorial-style reference but were less stylized on 5 of 8 pairs and 1.2-2.7x
    grainier. ``configs/gatys_paper.flags`` keeps the paper's weights.
    """
    return losses.LossConfig(style_weight=1e4, tv_weight=300.0)


@dataclasses.dataclass
class GatysConfig:
    """Every knob of the Gatys method; shared by ``nst-stylize`` and :func:`stylize`.

    ``loss`` (:class:`nst_tf.losses.LossConfig`) holds the feature network, its
    layers and the loss weights, in the paper's units by default: content loss
    ½ Σ (F - P)² (or its mean with ``content_loss="mean"``), style loss
    Σ_l w_l/(4 N²) Σ (Ĝ - Â)² on per-position Grams (eq. 4 when the style image
    has the output's size) with ``w_l`` defaulting to 1/L, on the network's own
    (caffe-scale) activations. The weights are :func:`default_loss`'s, chosen by
    measurement; the paper's α/β = 1e-3 keeps more of the photo::

        GatysConfig(image_size=256, loss=LossConfig(style_weight=1e3, tv_weight=0))
    """

    # Sizes. ``image_size`` is the longest side of the output. ``scales`` lists
    # smaller sizes to optimise first (coarse to fine); each result, upsampled,
    # initialises the next size. ``num_steps`` is per scale; ``coarse_steps``, when
    # set, replaces it at every scale but the last, whose steps cost the most.
    image_size: int = option(512, "Longest side of the output.", min=32)
    scales: Sequence[int] = option(
        (),
        "Smaller sizes optimised first, coarse to fine, e.g. 256,512; each result initialises "
        "the next size, ending at --image_size.",
    )
    style_scale: float = option(1.0, "Style image longest side relative to the content's.")
    num_steps: int = option(300, "Optimiser steps per scale.", min=1)
    coarse_steps: Optional[int] = option(
        None, "Steps at each --scales size, before the last (default: --num_steps).", min=1
    )

    # Optimiser. ``lbfgs_history``/``lbfgs_tolerance`` None: nst_tf.lbfgs defaults.
    optimizer: str = option("lbfgs", "Optimiser.", choices=OPTIMIZERS)
    learning_rate: float = option(0.02, "Adam/AdamW learning rate (pixels in [0, 1]).")
    lr_schedule: str = option(
        "constant",
        "Adam/AdamW schedule: step (x lr_gamma every lr_step_size), exponential, "
        "plateau (x lr_gamma after lr_patience steps without improvement).",
        choices=LR_SCHEDULES,
    )
    lr_step_size: int = option(50, "Steps per decay.", min=1)
    lr_gamma: float = option(0.3, "Decay factor of the LR schedules.")
    lr_patience: int = option(10, "Plateau patience (steps).", min=1)
    weight_decay: float = option(0.004, "AdamW weight decay.")
    lbfgs_history: Optional[int] = option(None, "L-BFGS correction pairs (default: nst_tf.lbfgs's).", min=1)
    lbfgs_tolerance: Optional[float] = option(None, "L-BFGS gradient tolerance (default: nst_tf.lbfgs's).")
    # "hager_zhang" runs tfp.optimizer.lbfgs_minimize; see nst_tf.lbfgs for why
    # the one-evaluation backtracking search is the default.
    lbfgs_line_search: str = option(
        "backtracking",
        "backtracking: one evaluation per iteration (default); hager_zhang: "
        "tfp.optimizer.lbfgs_minimize with its Wolfe line search.",
        choices=lbfgs.LINE_SEARCHES,
    )
    jit_compile: bool = option(False, "Compile the loss with XLA.")
    # "bfloat16": the feature network computes in bfloat16 (nst_tf.precision), about
    # 1.8x faster per step on CPUs with AVX512-BF16 or AMX; the image, the losses and
    # L-BFGS stay float32.
    precision: str = option(
        "float32",
        "Compute precision of the feature network (or of --model). bfloat16 is about "
        "twice as fast on CPUs with AVX512-BF16 or AMX and slower on others.",
        choices=PRECISIONS,
    )

    # Feature network, layers and loss weights (the paper's, with β and TV measured).
    loss: losses.LossConfig = dataclasses.field(default_factory=default_loss)

    # Starting image and styles.
    init: str = option("content", "Starting image.", choices=INITS)
    noise_ratio: float = option(0.6, "With --init=blend: (1 - r) content + r noise.")
    style_weights: Optional[Sequence[float]] = option(
        None, "Blend weights of the --style images, e.g. 0.7,0.3 (default: equal)."
    )
    style_crop: bool = option(False, "Centre-crop the style image to the content's aspect ratio first.")
    preserve_color: str = option("none", images.PRESERVE_COLOR_HELP, choices=images.PRESERVE_COLOR_MODES)
    seed: int = option(0, "Random seed (noise init, random weights).")

    # Monitoring and interruption.
    log_dir: Optional[str] = option(None, "TensorBoard log folder (losses per step, images).")
    log_every: int = option(10, "Steps between progress/TensorBoard reports.", min=1)
    image_every: int = option(50, "Steps between TensorBoard images.", min=1)
    eval_every: int = option(
        0,
        "Steps between nst-eval's metrics in TensorBoard, against steps (eval/) and against "
        "milliseconds of optimisation (eval_vs_ms/); needs --log_dir. 0: never.",
        min=0,
    )
    checkpoint_every: int = option(0, "Save the image being optimised every N steps (0: never).", min=0)
    checkpoint_dir: Optional[str] = option(None, "Checkpoint folder (default: <output without extension>_checkpoint).")
    resume: bool = option(False, "Continue from the checkpoint in --checkpoint_dir.")

    def __post_init__(self):
        self.scales = tuple(int(s) for s in self.scales)
        if self.style_weights is not None:
            self.style_weights = tuple(self.style_weights)
        self.validate()

    def validate(self):
        """Raise :class:`NSTError` naming the first invalid field."""
        check_fields(self)
        for name in ("image_size", "num_steps", "lr_step_size", "lr_patience", "log_every", "image_every"):
            if getattr(self, name) < 1:
                _fail(name, f"must be positive, got {getattr(self, name)}")
        for name in ("checkpoint_every", "eval_every", "weight_decay"):
            if not getattr(self, name) >= 0:
                _fail(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("learning_rate", "style_scale"):
            if not getattr(self, name) > 0:
                _fail(name, f"must be > 0, got {getattr(self, name)}")
        if self.coarse_steps is not None and self.coarse_steps < 1:
            _fail("coarse_steps", f"must be positive, got {self.coarse_steps}")
        if not 0.0 < self.lr_gamma <= 1.0:
            _fail("lr_gamma", f"must be in (0, 1], got {self.lr_gamma}")
        if not 0.0 <= self.noise_ratio <= 1.0:
            _fail("noise_ratio", f"must be in [0, 1], got {self.noise_ratio}")
        if any(s < 1 for s in self.scales) or list(self.scales) != sorted(set(self.scales)):
            _fail("scales", f"must be increasing positive sizes, got {list(self.scales)}")
        if self.scales and self.scales[-1] > self.image_size:
            _fail("scales", f"{self.scales[-1]} is larger than image_size={self.image_size}")
        value = self.style_weights
        if value is not None and (not value or any(not w >= 0 for w in value) or sum(value) <= 0):
            _fail("style_weights", f"must be non-negative with a positive sum, got {list(value)}")
        if self.resume and not self.checkpoint_dir:
            _fail("resume", "needs checkpoint_dir")
        if self.eval_every and not self.log_dir:
            _fail("eval_every", "needs --log_dir (the metrics go to TensorBoard)")

    def sizes(self):
        """The longest side at each scale, ending with ``image_size``."""
        sizes = list(self.scales)
        if not sizes or sizes[-1] < self.image_size:
            sizes.append(self.image_size)
        return sizes

    def scale_steps(self):
        """The optimiser steps at each of :meth:`sizes`."""
        coarse = self.num_steps if self.coarse_steps is None else self.coarse_steps
        return [coarse] * (len(self.sizes()) - 1) + [self.num_steps]

    def total_steps(self):
        return sum(self.scale_steps())


def _fail(field, reason):
    raise NSTError(f"--{field}: {reason}")


class Cancelled(Exception):
    """The optimisation was stopped by its ``should_stop`` (a user's cancel), after ``step`` steps."""

    def __init__(self, step):
        super().__init__(f"cancelled after step {step}")
        self.step = step


# ---------------------------------------------------------------------------
# Objective


class StyleTransferObjective(tf.Module):
    """The Gatys loss of one image size against one content and style, as a TensorFlow module.

    ``L(x) = α L_content + β Σ_l w_l E_l + λ_tv TV(x) + λ_lap L_lap(p, x)``: a
    :class:`nst_tf.losses.PerceptualLoss`, with the content target P and the
    (blended) style Grams A computed once at construction. The image ``x`` is a
    float32 tensor ``[1, H, W, 3]`` in [0, 1] of the content image's size.

    * :meth:`loss` ``(x) -> (total, terms)``: traceable Python, usable inside
      any ``tf.function`` or ``GradientTape`` (``terms``: see
      :meth:`nst_tf.losses.PerceptualLoss.__call__`).
    * :meth:`value_and_gradient` ``(x) -> (total, dL/dx)``: a ``tf.function``
      (XLA with ``jit_compile=True``) in the form L-BFGS expects.
    * :meth:`terms_and_gradient` ``(x) -> (total, terms, dL/dx)``: the same
      evaluation, also returning the terms (for Adam steps).
    * :meth:`losses` ``(x) -> (total, terms)``: compiled forward pass only
      (for progress and logging).

    Args:
      perceptual_loss: the :class:`nst_tf.losses.PerceptualLoss` to minimise.
      content_image: ``[H, W, 3]`` or ``[1, H, W, 3]`` in [0, 1].
      style_images: a list of ``[H, W, 3]`` images (any sizes).
      style_weights: blend weights of the style images (default equal).
      jit_compile: compile the evaluation with XLA.
    """

    def __init__(
        self, perceptual_loss, content_image, style_images, *, style_weights=None, jit_compile=False, name=None
    ):
        super().__init__(name=name)
        self.perceptual_loss = perceptual_loss
        self.content_target = perceptual_loss.content_target(content_image)
        if style_weights is None:
            style_weights = [1.0] * len(style_images)
        self.style_targets = perceptual_loss.style_target(style_images, list(style_weights))
        self._evaluate = tf.function(self._terms_and_gradient, jit_compile=jit_compile)
        self._forward = tf.function(self.loss, jit_compile=jit_compile)

    def loss(self, image):
        """Return ``(total, terms)`` for ``image`` [1, H, W, 3] in [0, 1]."""
        return self.perceptual_loss(image, self.content_target, self.style_targets)

    def losses(self, image):
        """Return ``(total, terms)`` without the gradient; compiled once per image shape."""
        return self._forward(tf.convert_to_tensor(image, tf.float32))

    def _terms_and_gradient(self, image):
        with tf.GradientTape() as tape:
            tape.watch(image)
            total, terms = self.loss(image)
        return total, terms, tape.gradient(total, image)

    def terms_and_gradient(self, image):
        """Return ``(total, terms, gradient)``; compiled once per image shape."""
        return self._evaluate(tf.convert_to_tensor(image, tf.float32))

    @tf.function
    def value_and_gradient(self, image):
        """Return ``(total, dL/dx)``: the form ``nst_tf.lbfgs.minimize`` takes."""
        total, _, gradient = self._evaluate(image)
        return total, gradient


def build_extractor(config):
    """The frozen feature network ``config`` (a :class:`GatysConfig`) asks for, in its precision."""
    return losses.build_extractor(config.loss, precision=config.precision)


def make_objective(extractor, content_image, style_images, config):
    """Build the :class:`StyleTransferObjective` described by a :class:`GatysConfig`.

    ``content_image`` is ``[H, W, 3]`` in [0, 1] at the size being optimised;
    ``style_images`` a list of images already scaled (see :func:`prepare_styles`).
    """
    return StyleTransferObjective(
        losses.PerceptualLoss(config.loss, extractor),
        content_image,
        style_images,
        style_weights=config.style_weights,
        jit_compile=config.jit_compile,
    )


# ---------------------------------------------------------------------------
# Optimisation


def make_keras_optimizer(config):
    rate = schedules.learning_rate(
        config.lr_schedule, config.learning_rate, step_size=config.lr_step_size, gamma=config.lr_gamma
    )
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(rate)


StepCallback = Callable[[int, tf.Tensor, dict], None]


def optimize(
    objective,
    initial,
    config,
    *,
    start_step=0,
    on_step: Optional[StepCallback] = None,
    report_every=1,
    should_stop: Optional[Callable[[], bool]] = None,
):
    """Minimise ``objective`` from ``initial`` ([1, H, W, 3] in [0, 1]).

    Runs ``config.num_steps - start_step`` steps of ``config.optimizer`` and
    returns the final image tensor. ``on_step(step, image, losses)`` is called
    after every ``report_every`` steps (and after the last) with the global step
    number (counting from ``start_step``) and a dict of loss values. A loss that
    becomes NaN or infinite raises NSTError naming that step
    (:func:`nst_tf.losses.check_finite`). ``should_stop()`` is asked after every
    step (with ``lbfgs_line_search="hager_zhang"``, every ``report_every`` steps);
    True raises :class:`Cancelled`.
    """
    initial = tf.convert_to_tensor(initial, tf.float32)
    remaining = config.num_steps - start_step
    if remaining <= 0:
        return initial
    if on_step is None:
        report_every = remaining
    should_stop = should_stop or (lambda: False)
    if config.optimizer == "lbfgs":
        return _optimize_lbfgs(objective, initial, config, start_step, remaining, on_step, report_every, should_stop)
    return _optimize_keras(objective, initial, config, start_step, remaining, on_step, report_every, should_stop)


def lbfgs_options(config):
    """The :func:`nst_tf.lbfgs.minimize` keywords a :class:`GatysConfig` sets (None: its defaults)."""
    options = {}
    if config.lbfgs_history is not None:
        options["history_size"] = config.lbfgs_history
    if config.lbfgs_tolerance is not None:
        options["tolerance"] = config.lbfgs_tolerance
    return options


def _optimize_lbfgs(objective, initial, config, start_step, remaining, on_step, report_every, should_stop):
    def check(iteration, loss):
        # L-BFGS accepts only steps that lower the loss, so a non-finite loss can only be the
        # first one, of the image it started from; it stops at once, reporting iteration 0.
        losses.check_finite({"total": loss}, start_step + max(int(iteration), 1))

    def callback(iteration, image, loss):
        check(iteration, loss)
        # L-BFGS reports only the total; one forward pass recovers the terms.
        _, terms = objective.losses(image)
        on_step(start_step + int(iteration), image, _loss_dict(loss, terms))

    result = lbfgs.minimize(
        objective.value_and_gradient,
        initial,
        max_iterations=remaining,
        callback=callback if on_step else None,
        callback_every=report_every,
        line_search=config.lbfgs_line_search,
        should_stop=should_stop,
        **lbfgs_options(config),
    )
    if result.stopped:
        raise Cancelled(start_step + result.iterations)
    check(result.iterations, result.loss)
    return tf.convert_to_tensor(result.image, tf.float32)


def _optimize_keras(objective, initial, config, start_step, remaining, on_step, report_every, should_stop):
    image = tf.Variable(initial, trainable=True, name="image")
    optimizer = make_keras_optimizer(config)
    optimizer.build([image])
    # Schedules read the optimiser's step counter: a resumed run continues them.
    optimizer.iterations.assign(start_step)
    # Every step is a plateau period: the rate the next step uses reflects this step's loss.
    plateau = (
        schedules.ReduceLROnPlateau(config.lr_gamma, config.lr_patience) if config.lr_schedule == "plateau" else None
    )

    @tf.function
    def train_step():
        total, terms, gradient = objective.terms_and_gradient(image)
        optimizer.apply_gradients([(gradient, image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        if plateau is not None:
            plateau.record(total, optimizer)
        return total, terms

    for i in range(1, remaining + 1):
        total, terms = train_step()
        # Every step (one scalar read back): a NaN loss makes a NaN image, which must
        # reach neither a checkpoint nor the output.
        losses.check_finite({"total": float(total)}, start_step + i)
        if on_step is not None and (i % report_every == 0 or i == remaining):
            on_step(start_step + i, image, _loss_dict(total, terms))
        if i < remaining and should_stop():
            raise Cancelled(start_step + i)
    return tf.convert_to_tensor(image)


def _loss_dict(total, terms):
    values = {"total": float(total)}
    values.update({name: float(value) for name, value in terms.items()})
    return values


# ---------------------------------------------------------------------------
# Images in, image out


def initial_image(content, styles, config, rng):
    """The starting image ([H, W, 3]) for ``config.init``.

    ``content``: the content image itself; ``noise``: uniform white noise;
    ``style``: the first style image resized to the content's size;
    ``blend``: (1 - r)·content + r·noise with r = ``noise_ratio`` (the noise-ratio initialisation of the HKU COMP 3359 report).
    """
    if config.init == "content":
        return content
    if config.init == "style":
        return images.resize_image(styles[0], content.shape[:2])
    noise = rng.uniform(0.0, 1.0, size=content.shape).astype(np.float32)
    if config.init == "noise":
        return noise
    return ((1.0 - config.noise_ratio) * content + config.noise_ratio * noise).astype(np.float32)


def prepare_styles(styles, content, config):
    """Scale (and optionally crop) each style image relative to ``content``."""
    return [
        images.scale_style_image(style, content.shape[:2], config.style_scale, crop=config.style_crop)
        for style in styles
    ]


def _as_image(value, what):
    if isinstance(value, (str, os.PathLike)):
        return images.load_image(value)
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise NSTError(f"{what}: expected an [H, W, 3] RGB array, got shape {array.shape}")
    return array


class _Monitor:
    """Progress, TensorBoard, quality metrics and checkpoints, fed by the optimiser's step reports.

    The metrics' time axis (``eval_vs_ms/``) counts the optimiser's time only:
    the monitor's own work (metrics, images, checkpoints) is left out, so the
    curve is what a run without ``--eval_every`` reaches at each moment.
    """

    def __init__(self, config, sizes, progress, record, on_step=None):
        self.config = config
        self.sizes = sizes
        self.record = record
        self.total = config.total_steps()
        self.progress = progress
        self.on_step = on_step
        self.writer = tf.summary.create_file_writer(config.log_dir) if config.log_dir else None
        self.scale_index = 0
        self.steps_before = 0
        self.last_image_step = -math.inf
        self.last_eval_step = -math.inf
        self.last_checkpoint_step = 0
        self.evaluate = None
        self.optimise_seconds = 0.0
        self.resumed_at = time.perf_counter()

    def begin_scale(self, index, start_step, evaluate=None):
        """Start scale ``index`` at ``start_step``; ``evaluate(image) -> metrics`` at this scale's size."""
        self.scale_index = index
        self.steps_before = sum(self.config.scale_steps()[:index])
        self.last_checkpoint_step = start_step
        self.evaluate = evaluate
        self.resumed_at = time.perf_counter()

    def report_every(self):
        """How often the optimiser must report for these consumers."""
        every = self.config.log_every
        for other in (self.config.checkpoint_every, self.config.eval_every):
            if other:
                every = min(every, other)
        return every

    def wanted(self):
        return bool(self.progress or self.on_step or self.writer or self.config.checkpoint_every)

    def __call__(self, step, image, values):
        self.optimise_seconds += time.perf_counter() - self.resumed_at
        try:
            self._report(step, image, values)
        finally:
            self.resumed_at = time.perf_counter()

    def _report(self, step, image, values):
        # Checkpoint first: an interruption while reporting must not lose the step.
        every = self.config.checkpoint_every
        if every and step - self.last_checkpoint_step >= every:
            self.checkpoint(image, step)
        done = self.steps_before + step
        if self.writer is not None:
            with self.writer.as_default(step=done):
                for name, value in values.items():
                    tf.summary.scalar(f"loss/{name}", value)
                if done - self.last_image_step >= self.config.image_every:
                    tf.summary.image("image", tf.convert_to_tensor(image)[:1])
                    self.last_image_step = done
                if self.evaluate is not None and done - self.last_eval_step >= self.config.eval_every:
                    self._log_metrics(done, image)
            self.writer.flush()
        if self.progress is not None:
            self.progress(done, self.total, values)
        if self.on_step is not None:
            self.on_step(done, self.total, np.clip(np.asarray(image)[0], 0.0, 1.0), values)

    def _log_metrics(self, done, image):
        metrics = self.evaluate(np.clip(np.asarray(image)[0], 0.0, 1.0))
        milliseconds = round(self.optimise_seconds * 1000)
        for name in evaluation.SUMMARY_METRICS:
            tf.summary.scalar(f"eval/{name}", metrics[name])
            tf.summary.scalar(f"eval_vs_ms/{name}", metrics[name], step=milliseconds)
        self.last_eval_step = done

    def checkpoint(self, image, step):
        save_checkpoint(
            self.config.checkpoint_dir,
            image,
            scale_index=self.scale_index,
            step=step,
            sizes=self.sizes,
            record=self.record,
        )
        self.last_checkpoint_step = step

    def close(self):
        if self.writer is not None:
            self.writer.close()


# The GatysConfig fields, besides its whole ``loss``, that change the objective: a checkpoint
# made under other values would continue another optimisation. The optimiser and its
# settings, num_steps and the logging fields may change on resume; ``sizes`` are checked
# on their own.
OBJECTIVE_FIELDS = ("style_weights", "style_scale", "style_crop", "preserve_color", "precision")


def checkpoint_record(content, styles, config):
    """What a checkpoint of a run belongs to, as JSON-ready data.

    SHA-256 hashes of the content's and each style's pixels (decoded float32 arrays, so a
    path and the array it holds agree) and the values of the fields that change the
    objective: every :class:`~nst_tf.losses.LossConfig` field and :data:`OBJECTIVE_FIELDS`,
    by flag name. :func:`load_checkpoint` refuses a checkpoint whose record differs.
    """
    objective = dataclasses.asdict(config.loss)
    objective.update({name: getattr(config, name) for name in OBJECTIVE_FIELDS})
    return {
        "content": _pixels_hash(content),
        "styles": [_pixels_hash(style) for style in styles],
        # Through JSON, so that tuples compare equal to the lists a loaded record holds.
        "objective": json.loads(json.dumps(objective)),
    }


def _pixels_hash(image):
    image = np.ascontiguousarray(image, np.float32)
    digest = hashlib.sha256(repr(image.shape).encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def save_checkpoint(directory, image, *, scale_index, step, sizes, record=None):
    """Atomically write the image being optimised, where it is, and ``record``
    (:func:`checkpoint_record`), as one .npz."""
    state = {"scale_index": scale_index, "step": step, "sizes": list(sizes), "record": record}
    buffer = io.BytesIO()
    np.savez(buffer, image=np.asarray(image, np.float32)[0], state=json.dumps(state))
    fileio.atomic_write_bytes(os.path.join(directory, CHECKPOINT_FILE), buffer.getvalue())


def load_checkpoint(directory, sizes, record=None):
    """Return ``(scale_index, step, image)`` saved by :func:`save_checkpoint`, or None if there is none.

    NSTError if the file is unreadable, or was made for other ``sizes`` or, when ``record``
    is given, for another record (other inputs or objective) than this run's.
    """
    path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path) as data:
            state = json.loads(str(data["state"]))
            image = data["image"]
        scale_index, step, saved_sizes = state["scale_index"], state["step"], state["sizes"]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        # Cut short (BadZipFile), or not one of ours.
        raise NSTError(f"{path}: unreadable checkpoint ({first_line(exc)})") from None
    if saved_sizes != list(sizes):
        raise NSTError(f"{path}: checkpoint is for sizes {saved_sizes}, this run uses {list(sizes)}")
    if record is not None:
        _check_record(path, state.get("record"), record)
    return scale_index, step, image


def _check_record(path, saved, record):
    """NSTError unless the checkpoint's record ``saved`` is this run's ``record``.

    Refused rather than started afresh: whoever passes --resume expects the run to go on
    from the checkpoint, and a silent fresh start would also overwrite it at its first save.
    """
    advice = "use another --checkpoint_dir, or leave out --resume to start afresh"
    if not isinstance(saved, dict):
        raise NSTError(f"{path}: checkpoint records no inputs (an older nst_tf wrote it); {advice}")
    if saved.get("content") != record["content"]:
        raise NSTError(f"{path}: made from another content image; {advice}")
    if saved.get("styles") != record["styles"]:
        raise NSTError(f"{path}: made from other style images; {advice}")
    before = saved.get("objective") or {}
    changed = [name for name in record["objective"] if before.get(name) != record["objective"][name]]
    if changed:
        settings = ", ".join(f"--{name}={before.get(name)} (now {record['objective'][name]})" for name in changed)
        raise NSTError(f"{path}: made with other loss settings: {settings}; {advice}")


def stylize(content, style, config=None, progress=None, extractor=None, on_step=None, should_stop=None):
    """Stylize ``content`` with ``style`` by optimisation (Gatys et al.).

    Args:
      content: an image path or an ``[H, W, 3]`` float array in [0, 1].
      style: a path or array, or a list of them (blended by
        ``config.style_weights``).
      config: a :class:`GatysConfig` (defaults: the paper's VGG19 setup, 512 px).
      progress: None for silence, True for a progress bar on stderr, or a
        callable ``progress(done, total, losses)``.
      extractor: a feature extractor to reuse (it must output every layer the
        config names); built from ``config`` when None.
      on_step: ``on_step(done, total, image, losses)`` with each progress report
        (every ``config.log_every`` steps and at the end of each scale): the image
        being optimised, ``[H, W, 3]`` float32 in [0, 1] at the current scale's size,
        before colour preservation. For live previews.
      should_stop: ``should_stop() -> bool``, asked after every step; True stops the
        optimisation there and raises :class:`Cancelled`.

    Returns:
      The stylized image, ``[H, W, 3]`` float32 in [0, 1], longest side
      ``config.image_size``.
    """
    config = config or GatysConfig()
    content = _as_image(content, "content")
    styles = style if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise NSTError("style: at least one style image is needed")
    styles = [_as_image(s, "style") for s in styles]
    if config.style_weights is not None and len(config.style_weights) != len(styles):
        _fail("style_weights", f"has {len(config.style_weights)} values for {len(styles)} style images")
    if config.checkpoint_every and not config.checkpoint_dir:
        _fail("checkpoint_dir", "needed when checkpoint_every is set")

    sizes = config.sizes()
    final_shape = images.longest_side_shape(content.shape, sizes[-1])
    record = None
    resume = None
    if config.checkpoint_every or config.resume:
        # A kill -9 during a save leaves its temporary file beside the checkpoint.
        fileio.remove_leftovers(config.checkpoint_dir)
        record = checkpoint_record(content, styles, config)
    if config.resume:
        resume = load_checkpoint(config.checkpoint_dir, sizes, record)
    styles = [images.recolor_style(s, content, config.preserve_color) for s in styles]
    if extractor is None:
        extractor = build_extractor(config)
    bar = None
    if progress is True:
        from nst_tf.progress import ProgressBar  # pylint: disable=import-outside-toplevel

        if resume is not None:
            sys.stderr.write(f"resumed from step {sum(config.scale_steps()[: resume[0]]) + resume[1]}\n")
        bar = ProgressBar(config.total_steps(), "stylize")
        progress = lambda done, total, values: bar.update(done, **losses.summary(values))  # noqa: E731
    monitor = _Monitor(config, sizes, progress, record, on_step)
    rng = np.random.default_rng(config.seed)
    image = None
    try:
        for index, (size, steps) in enumerate(zip(sizes, config.scale_steps())):
            content_s = images.resize_longest_side(content, size)
            if min(content_s.shape[:2]) < images.MIN_SIDE:
                _fail(
                    "scales" if index < len(sizes) - 1 else "image_size",
                    f"{size} px makes the content {content_s.shape[1]}x{content_s.shape[0]}, "
                    f"below the feature extractor's {images.MIN_SIDE} px minimum side",
                )
            start_step = 0
            if resume is not None and resume[0] > index:
                continue
            if resume is not None and resume[0] == index:
                start_step, init = resume[1], resume[2]
                if init.shape != content_s.shape:
                    raise NSTError(
                        f"{config.checkpoint_dir}: checkpoint image is {init.shape}, expected {content_s.shape}"
                    )
            elif image is None:
                init = initial_image(content_s, styles, config, rng)
            else:
                init = images.resize_image(np.asarray(image)[0], content_s.shape[:2])
            objective = make_objective(
                extractor,
                content_s,
                prepare_styles(styles, content_s, config),
                weights_at_scale(config, content_s.shape, final_shape),
            )
            monitor.begin_scale(index, start_step, evaluator(config, extractor, content_s, styles[0]))
            image = optimize(
                objective,
                init[np.newaxis],
                dataclasses.replace(config, num_steps=steps),
                start_step=start_step,
                on_step=monitor if monitor.wanted() else None,
                report_every=monitor.report_every(),
                should_stop=should_stop,
            )
            if config.checkpoint_every:
                # Also when L-BFGS converged early: a resumed run skips this scale.
                monitor.checkpoint(image, steps)
    finally:
        monitor.close()
        if bar is not None:
            bar.close()
    result = np.clip(np.asarray(image)[0], 0.0, 1.0).astype(np.float32)
    return images.preserve_color(result, content, config.preserve_color)


def evaluator(config, extractor, content, style):
    """``image -> nst-eval metrics`` against ``content`` and ``style`` on the loss's own network, or None.

    None unless ``config.eval_every``. The metrics' layers are the loss's, so
    the curve measures what the optimisation minimises; with several style
    images, the first one is the painting measured against.
    """
    if not config.eval_every:
        return None
    eval_config = evaluation.EvalConfig.of_loss(config.loss)
    return lambda image: evaluation.evaluate(image, content, style, config=eval_config, extractor=extractor)


def weights_at_scale(config, shape, final_shape):
    """``config`` with the content weight of a coarse-to-fine scale of ``shape`` (H, W).

    The paper's content loss, ½ Σ (F - P)², grows with the number of feature
    positions; its style loss, 1/(4 N²) Σ (Ĝ - Â)² on per-position Grams, does not. Left as it is, α
    would weigh the content (output area / scale area) times less at a coarser
    scale than at the output size, and that scale would hand on a more stylized
    image than the output's α/β asks for, which the last scale then spends
    iterations undoing (about a fifth of them in ``bench/gatys_multiscale.py``).
    So α is multiplied by the area ratio. The mean content loss needs no
    correction; TV and Laplacian weights are left as set, since a smooth image's
    squared differences grow about as fast as its pixel count shrinks.
    """
    if config.loss.content_loss != "sum" or tuple(shape[:2]) == tuple(final_shape[:2]):
        return config
    ratio = (final_shape[0] * final_shape[1]) / (shape[0] * shape[1])
    loss = dataclasses.replace(config.loss, content_weight=config.loss.content_weight * ratio)
    return dataclasses.replace(config, loss=loss)
