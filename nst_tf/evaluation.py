"""Picture-quality metrics for stylized images: how painted, how faithful, how clean.

Every metric is a pure function on float images in [0, 1] (``[H, W, 3]``) or
on feature maps (``[B, H, W, C]``), with its formula in the docstring.
:func:`evaluate` computes all of them for one (output, content photo,
painting[, reference]) triple on one feature network, built once by
:func:`build_extractor` from an :class:`EvalConfig`, and returns a flat dict:

* ``style_gram``, ``style_gram/<layer>``: per-position Gram distance to the
  painting at the output's scale (:func:`gram_distance`);
  ``style_meanstd``, ``style_meanstd/<layer>``: the distance of the
  features' channel means and standard deviations (:func:`mean_std_distance`).
  Each has a ``_ratio`` twin: the output's distance over the content photo's
  own distance to the painting. 1 means untouched, lower means more stylized.
  A ratio whose baseline is 0 (the photo is the painting) is NaN.
* ``content``, ``content/<layer>``: feature distance to the photo
  (:func:`content_distance`); ``content_ratio``: over the painting's distance
  to the photo (0 is the photo, 1 is as far as the painting).
* ``ssim_luminance``: SSIM of the luminance to the photo's (:func:`ssim_luminance`).
* ``color_to_style``, ``color_to_content``: Fréchet distance of the pixel
  colours in YUV (:func:`color_distance`).
* ``noise_ratio``: high-frequency energy over the photo's (:func:`noise_ratio`).
* ``grid``: the share of the high-frequency detail that is one pattern repeated
  on a 4-pixel grid (:func:`grid_pattern`): the checkerboard of transposed
  convolutions and the blocks of stride-2 stages, which ``noise_ratio`` counts
  as detail like any other.
* ``reference_mse``, ``reference_ssim``: against a pseudo-ground truth, another
  method's output for the same pair, when one is given.

:func:`contact_sheet` lays evaluated triples out for the eye, each row labelled
with its main metrics, so a figure and the picture it describes sit together.

:func:`kid` compares two sets of images by the Kernel Inception Distance. Its
features here are the loss network's pooled features (:func:`pooled_features`),
which run offline: a proxy for the Inception-V3 KID of the literature, whose
values it does not reproduce, good for ranking models on one extractor.
"""

import csv
import dataclasses
import os
from typing import Optional
from typing import Sequence
from typing import Union

import numpy as np
import tensorflow as tf

from nst_tf import features
from nst_tf import images
from nst_tf import losses
from nst_tf.config import option
from nst_tf.errors import NSTError
from nst_tf.progress import ProgressBar


@dataclasses.dataclass
class EvalConfig:
    """The feature network and layers the metrics use, and the size they are taken at.

    The layers default to Gatys et al.'s, those of the default loss
    (:class:`nst_tf.losses.LossConfig`), so the style and content distances
    measure what the optimisation minimises.
    """

    feature_extractor: str = option("vgg19", "Feature network of the metrics.", choices=features.EXTRACTORS)
    weights: Optional[str] = option(
        "imagenet",
        "Feature network weights: imagenet (Keras cache), a Keras no-top .weights.h5 file, or none (random, for tests).",
    )
    pooling: str = option("max", "VGG pooling of the feature network.", choices=features.POOLINGS)
    content_layers: Optional[Sequence[Union[str, int]]] = option(
        None, "Content layers by name or conv index (default: block4_conv2)."
    )
    style_layers: Optional[Sequence[Union[str, int]]] = option(
        None, "Style layers by name or conv index (default: block1_conv1..block5_conv1)."
    )
    max_side: int = option(
        512,
        "Outputs larger than this are shrunk to this longest side before measuring (0: full size).",
        min=0,
    )

    def __post_init__(self):
        if self.max_side != 0 and self.max_side < images.MIN_SIDE:
            raise NSTError(f"--max_side: must be 0 (full size) or at least {images.MIN_SIDE}, got {self.max_side}")
        self.layers()  # validates the extractor, weights spelling and layers, naming the flag

    @classmethod
    def of_loss(cls, loss_config):
        """The metrics on a loss's own network and layers, at full size.

        A curve of them during a run (``nst-stylize --eval_every``, the trainers'
        ``--eval_dir``) then measures what the optimisation minimises.
        """
        content_layers, style_layers = loss_config.layers()
        return cls(
            feature_extractor=loss_config.feature_extractor,
            weights=loss_config.weights,
            pooling=loss_config.pooling,
            content_layers=content_layers,
            style_layers=style_layers,
            max_side=0,
        )

    def loss_config(self):
        """The :class:`~nst_tf.losses.LossConfig` of the same network and layers."""
        return losses.LossConfig(
            feature_extractor=self.feature_extractor,
            weights=self.weights,
            pooling=self.pooling,
            content_layers=self.content_layers,
            style_layers=self.style_layers,
        )

    def layers(self):
        """``(content_layers, style_layers)`` as Keras layer names."""
        return self.loss_config().layers()


def build_extractor(config):
    """The frozen feature network of an :class:`EvalConfig`, with its content and style layers."""
    return losses.build_extractor(config.loss_config())


# --- formulas ----------------------------------------------------------------


def _float64(x):
    return np.asarray(x, dtype=np.float64)


def gram_distance(features, target):
    """Gatys et al.'s style distance of one layer, on per-position Grams.

        E_l = 1/(4 N_l²) Σ_ij (Ĝ^l_ij - Â^l_ij)²,   Ĝ^l = F^lᵀF^l / M_l

    (:func:`nst_tf.losses.gram_matrix`), with ``N_l`` channels and ``M_l``
    positions, so ``features`` and ``target`` may have different sizes. The
    mean over the batch.
    """
    gram, target_gram = losses.gram_matrix(features), losses.gram_matrix(target)
    channels = tf.cast(tf.shape(gram)[-1], tf.float32)
    return tf.reduce_mean(tf.reduce_sum(tf.square(gram - target_gram), axis=[1, 2])) / (4.0 * channels**2)


def mean_std_distance(features, target):
    """The style distance of Huang & Belongie, "Arbitrary Style Transfer in Real-time with
    Adaptive Instance Normalization", for one layer:

        L_l = ‖μ(F) - μ(S)‖₂ + ‖σ(F) - σ(S)‖₂

    with ``μ``, ``σ`` the per-channel mean and standard deviation over positions;
    the mean over the batch. Sizes may differ.
    """
    mean, variance = tf.nn.moments(tf.cast(features, tf.float32), axes=[1, 2])
    target_mean, target_variance = tf.nn.moments(tf.cast(target, tf.float32), axes=[1, 2])
    return tf.reduce_mean(
        tf.norm(mean - target_mean, axis=-1) + tf.norm(tf.sqrt(variance) - tf.sqrt(target_variance), axis=-1)
    )


def content_distance(features, target):
    """Mean squared feature difference of one layer: ``1/(N_l M_l) Σ_ij (F_ij - P_ij)²``.

    Johnson et al.'s feature reconstruction loss; the mean, not Gatys' half sum,
    so images of different sizes compare. Same shapes.
    """
    return tf.reduce_mean(tf.square(tf.cast(features, tf.float32) - tf.cast(target, tf.float32)))


def luminance(image):
    """``Y = 0.299 R + 0.587 G + 0.114 B`` of ``[..., 3]`` RGB, as ``[..., 1]`` (``tf.image.rgb_to_yuv``)."""
    return tf.image.rgb_to_yuv(tf.cast(image, tf.float32))[..., :1]


def ssim_luminance(image, target):
    """SSIM of the luminance (:func:`luminance`): Wang et al., "Image Quality Assessment: From
    Error Visibility to Structural Similarity", through ``tf.image.ssim`` (11x11 Gaussian
    window of σ 1.5, K1 0.01, K2 0.03, dynamic range 1):

        SSIM = mean over windows of (2μ_xμ_y + C1)(2σ_xy + C2) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2))

    1 for identical images. Same shapes, at least 11 px a side.
    """
    return tf.reduce_mean(tf.image.ssim(luminance(image), luminance(target), max_val=1.0))


def mse(image, target):
    """Mean squared pixel difference ``1/(3 H W) Σ (x - y)²``. Same shapes."""
    return tf.reduce_mean(tf.square(tf.cast(image, tf.float32) - tf.cast(target, tf.float32)))


def _symmetric_sqrt(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def color_distance(image, target):
    """Fréchet distance of the pixel colours in YUV (BT.601, ``tf.image.rgb_to_yuv``).

    Gaussians fitted to the pixels' (Y, U, V), means ``μ``, covariances ``Σ``:

        d² = ‖μ_x - μ_y‖² + Tr(Σ_x + Σ_y - 2 (Σ_x^½ Σ_y Σ_x^½)^½)

    (Dowson & Landau, "The Fréchet distance between multivariate normal
    distributions"; the formula of FID). YUV separates brightness from colour
    linearly, so the distance is in the units of the pixels. Sizes may differ.
    """
    x = _float64(tf.image.rgb_to_yuv(tf.cast(image, tf.float32))).reshape(-1, 3)
    y = _float64(tf.image.rgb_to_yuv(tf.cast(target, tf.float32))).reshape(-1, 3)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root_x = _symmetric_sqrt(cov_x)
    cross = _symmetric_sqrt(root_x @ cov_y @ root_x)
    distance = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(cov_x + cov_y - 2.0 * cross)
    # Rounding leaves about -1e-16 for identical colours; the distance itself is never negative.
    return float(max(distance, 0.0))


def _luminance_laplacian(image):
    """``[H-2, W-2]``: the 3x3 five-point Laplacian of the luminance over the valid positions."""
    return losses.laplacian(luminance(image)[tf.newaxis], pool_size=1)[0, ..., 0]


def high_frequency_energy(image):
    """Mean squared Laplacian of the luminance: ``1/M Σ (ΔY)²``, ``Δ`` the 3x3 five-point
    Laplacian (:func:`nst_tf.losses.laplacian`) over the valid positions.

    Grain and checkerboard artefacts raise it; smooth shading does not.
    """
    return tf.reduce_mean(tf.square(_luminance_laplacian(image)))


def noise_ratio(image, content):
    """High-frequency energy (:func:`high_frequency_energy`) of ``image`` over the photo's.

    Above 1, the output is grainier than the photo it was made from.
    """
    return high_frequency_energy(image) / high_frequency_energy(content)


# Stride-2 stages repeat with a period of 2 (transposed convolutions) or 4 (two of them).
GRID_PERIOD = 4


def grid_pattern(image, period=GRID_PERIOD):
    """How much of the image's detail is one fixed pattern on a ``period``-pixel grid.

    With ``r = ΔY`` the Laplacian of the luminance (as :func:`high_frequency_energy`) over
    ``M`` positions, cropped to a multiple of ``p = period``, and its mean per grid phase

        m_ab = mean_ij r[p i + a, p j + b],   a, b < p,

        grid = sqrt(1/p² Σ_ab m_ab²) / sqrt(1/M Σ r²).

    Detail that does not depend on where a pixel sits on the grid averages out of every
    ``m_ab`` (random detail leaves about ``p / sqrt(M)``, 0.016 at 256 x 256); a pattern
    repeated every ``p`` pixels, or every divisor of ``p`` (a period-2 checkerboard also
    repeats every 4), stays. 1 for a pure such pattern, 0 for an image without detail.
    """
    r = _float64(_luminance_laplacian(image))
    rows, columns = (r.shape[0] // period) * period, (r.shape[1] // period) * period
    r = r[:rows, :columns]
    energy = np.mean(r**2)
    if energy == 0:
        return 0.0
    phases = r.reshape(rows // period, period, columns // period, period).mean(axis=(0, 2))
    return float(np.sqrt(np.mean(phases**2) / energy))


def kid(features_x, features_y):
    """Kernel Inception Distance: the unbiased MMD² of Bińkowski et al., "Demystifying MMD GANs",
    with the cubic polynomial kernel ``k(a, b) = (aᵀb / d + 1)³``:

        KID = 1/(n(n-1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i, y_j) - 2/(nm) Σ_ij k(x_i, y_j)

    on ``[n, d]`` and ``[m, d]`` feature sets (n, m >= 2), on the whole sets
    rather than the paper's average over random subsets. Unbiased, so it is
    about 0, and can be slightly negative, for two samples of one distribution.
    """
    x, y = _float64(features_x), _float64(features_y)
    if len(x) < 2 or len(y) < 2:
        raise NSTError(f"KID needs at least 2 images per set, got {len(x)} and {len(y)}")
    dim = x.shape[1]
    k_xx, k_yy, k_xy = ((a @ b.T / dim + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    n, m = len(x), len(y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def pooled_features(extractor, image_list, layer):
    """``[n, C]``: the global average over positions of ``layer``'s features, one row per image.

    Images may differ in size. With the loss network's last style layer
    (:func:`kid_layer`), these are the features of the offline KID proxy.
    """
    return np.stack([_pooled(extractor, image, layer) for image in image_list])


def _pooled(extractor, image, layer):
    return _float64(tf.reduce_mean(extractor(_batch(image))[layer], axis=[1, 2]))[0]


def kid_layer(config):
    """The layer of the KID proxy: the last style layer of ``config`` (``block5_conv1`` by default),
    the most abstract features the loss network computes, as Inception's pool3 is for KID."""
    return config.layers()[1][-1]


# --- one triple ----------------------------------------------------------------


def _shrunk(image, max_side):
    return images.resize_longest_side(image, max_side) if max_side and max(image.shape[:2]) > max_side else image


def _batch(image):
    return tf.convert_to_tensor(np.asarray(image, dtype=np.float32)[np.newaxis])


def _ratio(value, baseline):
    # A zero baseline (the photo is the painting) leaves nothing to compare against.
    return value / baseline if baseline > 0 else float("nan")


def _with_ratios(prefix, per_layer, baseline):
    """``prefix``, ``prefix/<layer>`` and their ``_ratio`` to ``baseline``'s per-layer values (mean over layers)."""
    total, base_total = np.mean(list(per_layer.values())), np.mean(list(baseline.values()))
    metrics = {prefix: total, f"{prefix}_ratio": _ratio(total, base_total)}
    for layer, value in per_layer.items():
        metrics[f"{prefix}/{layer}"] = value
        metrics[f"{prefix}_ratio/{layer}"] = _ratio(value, baseline[layer])
    return metrics


def evaluate(output, content, style, reference=None, config=None, extractor=None):
    """All metrics of one stylized image, as a flat ``{name: float}`` dict (see the module docstring).

    Args:
      output: the stylized image, ``[H, W, 3]`` in [0, 1]; shrunk to
        ``config.max_side`` first if larger.
      content: the photo, resized to the output's shape.
      style: the painting, resized so that its longest side is the output's
        (its scale in the output) for the style metrics, and to the output's
        shape for the content ratio.
      reference: an optional pseudo-ground truth, resized to the output's shape.
      config: an :class:`EvalConfig` (default: its defaults).
      extractor: the network of ``config`` (:func:`build_extractor`), to build
        it once for many triples.
    """
    config = config or EvalConfig()
    extractor = extractor or build_extractor(config)
    content_layers, style_layers = config.layers()
    output = _shrunk(np.asarray(output, dtype=np.float32), config.max_side)
    shape = output.shape[:2]
    content = images.resize_image(content, shape)
    painting = images.resize_longest_side(style, max(shape))
    painting_as_output = images.resize_image(style, shape)

    out_f, content_f, painting_f, painting_as_output_f = (
        extractor(_batch(image)) for image in (output, content, painting, painting_as_output)
    )

    def per_layer(distance, layers, a, b):
        return {layer: float(distance(a[layer], b[layer])) for layer in layers}

    metrics = {}
    for name, distance in (("style_gram", gram_distance), ("style_meanstd", mean_std_distance)):
        metrics.update(
            _with_ratios(
                name,
                per_layer(distance, style_layers, out_f, painting_f),
                per_layer(distance, style_layers, content_f, painting_f),
            )
        )
    metrics.update(
        _with_ratios(
            "content",
            per_layer(content_distance, content_layers, out_f, content_f),
            per_layer(content_distance, content_layers, painting_as_output_f, content_f),
        )
    )
    metrics["ssim_luminance"] = float(ssim_luminance(output, content))
    metrics["color_to_style"] = color_distance(output, painting)
    metrics["color_to_content"] = color_distance(output, content)
    metrics["noise_ratio"] = float(noise_ratio(output, content))
    metrics["grid"] = grid_pattern(output)
    if reference is not None:
        reference = images.resize_image(reference, shape)
        metrics["reference_mse"] = float(mse(output, reference))
        metrics["reference_ssim"] = float(ssim_luminance(output, reference))
    return {name: float(value) for name, value in metrics.items()}


# --- files ---------------------------------------------------------------------

MANIFEST_COLUMNS = ("output", "content", "style", "reference")


@dataclasses.dataclass(frozen=True)
class Triple:
    """The files of one evaluation: a stylized image, its photo, its painting, and maybe a reference."""

    name: str  # the output's path relative to the outputs folder, without extension
    output: str
    content: str
    style: str
    reference: Optional[str] = None


def _key(path, folder):
    return os.path.splitext(os.path.relpath(path, folder))[0]


def _matcher(flag, path):
    """A function from an output's key to the file of ``--flag``: ``path`` itself, or its match in a folder."""
    if not os.path.isdir(path):
        if not os.path.isfile(path):
            raise NSTError(f"--{flag}: {path}: no such file or directory")
        return lambda key: path
    by_key = {_key(p, path): p for p in images.list_images(path)}
    by_stem = {}
    for key, p in by_key.items():
        by_stem.setdefault(os.path.basename(key), []).append(p)

    def match(key):
        if key in by_key:
            return by_key[key]
        stem_matches = by_stem.get(os.path.basename(key), [])
        if len(stem_matches) == 1:
            return stem_matches[0]
        reason = "several images" if stem_matches else "no image"
        raise NSTError(f"--{flag}: {reason} matching {key!r} in {path}")

    return match


def match_files(output, content, style, reference=None):
    """The :class:`Triple` of each output: files, or folders matched by relative path, then by stem.

    ``output`` is an image or a folder of them; ``content``, ``style`` and
    ``reference`` are each one image used for every output, or a folder that
    holds each output's partner under the same relative path (or, failing
    that, the one image of the same stem), any extension.
    """
    if os.path.isdir(output):
        outputs = [(_key(p, output), p) for p in images.list_images(output)]
        if not outputs:
            raise NSTError(f"--output: {output}: no images")
    elif os.path.isfile(output):
        outputs = [(os.path.splitext(os.path.basename(output))[0], output)]
    else:
        raise NSTError(f"--output: {output}: no such file or directory")
    partners = {"content": _matcher("content", content), "style": _matcher("style", style)}
    if reference:
        partners["reference"] = _matcher("reference", reference)
    return [
        Triple(name=key, output=path, **{flag: match(key) for flag, match in partners.items()}) for key, path in outputs
    ]


def read_manifest(path):
    """The :class:`Triple` of each row of a CSV with columns output, content, style[, reference].

    Relative paths are relative to the CSV's folder; an empty reference cell means none.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
        columns = tuple(reader.fieldnames or ())
    except OSError as exc:
        raise NSTError(f"--manifest: {path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise NSTError(f"--manifest: {path}: not a UTF-8 CSV file ({exc})") from None
    missing = [c for c in MANIFEST_COLUMNS[:3] if c not in columns]
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    if missing or unknown:
        raise NSTError(f"--manifest: {path}: columns must be output,content,style[,reference], got {','.join(columns)}")
    if not rows:
        raise NSTError(f"--manifest: {path}: no rows")
    folder = os.path.dirname(os.path.abspath(path))
    triples = []
    for number, row in enumerate(rows, start=2):
        if any(not (row.get(c) or "").strip() for c in MANIFEST_COLUMNS[:3]):
            raise NSTError(f"--manifest: {path}:{number}: output, content and style are required")
        files = {c: os.path.join(folder, row[c].strip()) for c in MANIFEST_COLUMNS if (row.get(c) or "").strip()}
        triples.append(Triple(name=row["output"].strip(), **files))
    return triples


def evaluate_files(triples, config, progress=False):
    """:func:`evaluate` on the images of each :class:`Triple`, one extractor for all;
    ``progress`` shows a progress bar on stderr.

    Returns ``(results, sets)``: ``results`` is ``[(triple, metrics)]``;
    ``sets`` holds the KID proxy (:func:`kid` on :func:`kid_layer`'s pooled
    features, images shrunk to ``config.max_side``) of the outputs against
    the distinct photos (``kid_to_content``) and paintings (``kid_to_style``),
    for each of those with at least two images, when there are two outputs.
    """
    extractor = build_extractor(config)
    layer = kid_layer(config)
    results, pooled = [], {"output": {}, "content": {}, "style": {}}
    with ProgressBar(len(triples), "evaluate", enabled=progress) as bar:
        for triple in triples:
            loaded = {
                name: images.load_image(getattr(triple, name))
                for name in MANIFEST_COLUMNS
                if getattr(triple, name) is not None
            }
            results.append((triple, evaluate(**loaded, config=config, extractor=extractor)))
            for name, by_path in pooled.items():
                path = getattr(triple, name)
                if path not in by_path:
                    by_path[path] = _pooled(extractor, _shrunk(loaded[name], config.max_side), layer)
            bar.update(len(results))
    sets = {}
    outputs = list(pooled["output"].values())
    for name in ("content", "style"):
        others = list(pooled[name].values())
        if len(outputs) >= 2 and len(others) >= 2:
            sets[f"kid_to_{name}"] = kid(outputs, others)
    return results, sets


# The metrics that compare across pairs: nst-eval's table, and the TensorBoard
# curves of ``nst-stylize --eval_every``.
SUMMARY_METRICS = (
    "style_gram_ratio",
    "style_meanstd_ratio",
    "content_ratio",
    "ssim_luminance",
    "color_to_style",
    "color_to_content",
    "noise_ratio",
    "grid",
)


def median_metrics(results, names=SUMMARY_METRICS):
    """``{name: median}`` over a list of :func:`evaluate` results, for the ``names`` they have."""
    return {name: float(np.median([m[name] for m in results])) for name in names if results and name in results[0]}


# The row labels of the contact sheet: (metric, short name).
SHEET_METRICS = (
    ("style_gram_ratio", "style"),
    ("content_ratio", "content"),
    ("ssim_luminance", "ssim"),
    ("noise_ratio", "noise"),
    ("grid", "grid"),
    ("reference_ssim", "ref ssim"),
)


def contact_sheet(results, cell=192):
    """A labelled sheet of :func:`evaluate_files`'s ``results``: ``[H, W, 3]`` in [0, 1].

    One row per output: photo | painting | output [| reference], each
    letterboxed into a ``cell`` px square, the row labelled with the output's
    name and its :data:`SHEET_METRICS`.
    """
    if not results:
        raise NSTError("contact sheet: no results")
    columns = [c for c in ("content", "style", "output", "reference") if any(getattr(t, c) for t, _ in results)]
    titles = {"content": "photo", "style": "painting", "output": "output", "reference": "reference"}
    grid, labels = [], []
    for triple, metrics in results:
        row = []
        for column in columns:
            path = getattr(triple, column)
            row.append(
                images.letterbox(images.load_image(path), cell) if path else np.ones((cell, cell, 3), np.float32)
            )
        grid.append(row)
        lines = [f"{short} {metrics[name]:.3g}" for name, short in SHEET_METRICS if name in metrics]
        labels.append("\n".join([triple.name] + lines))
    return images.contact_sheet(grid, labels, [titles[c] for c in columns])
