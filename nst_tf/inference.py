"""Stylize images with a trained feed-forward net: ``nst-stylize --model=DIR``.

``DIR`` is either a training output dir of nst-train-fast / nst-train-multistyle
(``model_config.json`` + checkpoints) or a SavedModel exported by nst-export
(a version folder, or the export folder whose highest version is used), called
through its ``stylize_tensor`` signature: float32 RGB [0, 255] NHWC images
(+ ``style_weights`` [N] for multi-style nets).

The content is one image or a folder (searched recursively; the output folder
mirrors its layout). Images are stylized at full size, in batches of images of
equal size, with one progress bar. A multi-style net takes ``style_weights``:
one weight per style, normalised to a convex mix (one-hot picks a style).
"""

import dataclasses
import json
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from nst_tf import images
from nst_tf.config import option
from nst_tf.errors import NSTError
from nst_tf.precision import PRECISIONS
from nst_tf.progress import ProgressBar

SAVED_MODEL_FILE = "saved_model.pb"
EXPORT_INFO = os.path.join("assets.extra", "nst_tf.json")


@dataclasses.dataclass
class InferenceConfig:
    model: str = option(help="Trained feed-forward model directory (nst-train-fast / nst-train-multistyle) "
                        "or a SavedModel exported by nst-export.")
    content: str = option(help="An image file or a folder (searched recursively).")
    output: Optional[str] = option(None, "A file (one image) or a folder; default beside the content.")
    style_weights: Optional[Sequence[float]] = option(
        None, "Multi-style mix, one weight per style (default: the first style).")
    preserve_color: str = option("none", "Keep the content's colours (see nst_tf.images.preserve_color).",
                                 choices=images.PRESERVE_COLOR_MODES)
    max_side: Optional[int] = option(None, "Shrink larger inputs to this longest side first.", min=1)
    batch_size: int = option(4, "Images of equal size per forward pass.", min=1)
    precision: str = option("float32", "Compute precision of a training dir's net; a SavedModel's is fixed "
                            "when it is exported.", choices=PRECISIONS)


class Stylizer:
    """A trained net as ``stylizer(images [B, H, W, 3] in [0, 1], style_weights) -> [0, 1]``."""

    def __init__(self, path, precision="float32"):
        self.path = path
        saved_model = _saved_model_dir(path)
        if saved_model:
            if precision != "float32":
                raise NSTError(f"--precision: {path} is a SavedModel, whose precision was fixed "
                               "when it was exported (nst-export --precision)")
            self._init_saved_model(saved_model)
        else:
            self._init_training_dir(path, precision)

    def _init_training_dir(self, path, precision):
        from nst_tf.training import base  # pylint: disable=import-outside-toplevel

        description = base.read_model_config(path)
        method = description.get("method")
        if method not in ("fast", "multistyle"):
            raise NSTError(f"--model: {path}: a {method!r} model; stylize takes fast or multistyle nets"
                           + (" (use nst-translate)" if method == "cyclegan" else ""))
        model = base.load_trained_model(path, "model", compute_precision=precision)
        self.num_styles = getattr(model, "num_styles", 0) if method == "multistyle" else 0
        self.style_names = list(description.get("style_names", []))
        if self.num_styles:
            self._fn = tf.function(lambda x, w: model((x, w)), reduce_retracing=True)
        else:
            self._fn = tf.function(lambda x, w: model(x), reduce_retracing=True)

    def _init_saved_model(self, path):
        loaded = tf.saved_model.load(path)
        if "stylize_tensor" not in loaded.signatures:
            raise NSTError(f"--model: {path}: SavedModel has no stylize_tensor signature")
        signature = loaded.signatures["stylize_tensor"]
        spec = signature.structured_input_signature[1].get("style_weights")
        self.num_styles = int(spec.shape[0]) if spec is not None else 0
        info = {}
        if os.path.isfile(os.path.join(path, EXPORT_INFO)):
            with open(os.path.join(path, EXPORT_INFO), encoding="utf-8") as f:
                info = json.load(f)
        self.style_names = list(info.get("style_names", []))
        self._loaded = loaded  # keeps the signature's variables alive

        def call(x, w):
            kwargs = {"images": x * 255.0}
            if self.num_styles:
                kwargs["style_weights"] = w
            return signature(**kwargs)["images"] / 255.0

        self._fn = call

    def style_mix(self, weights):
        """The normalised ``[N]`` style weights (default: the first style), or NSTError."""
        if not self.num_styles:
            if weights:
                raise NSTError("--style_weights: this is a single-style net")
            return tf.zeros([0], tf.float32)
        if not weights:
            weights = [1.0] + [0.0] * (self.num_styles - 1)
        weights = np.asarray(weights, np.float32)
        if weights.shape != (self.num_styles,):
            raise NSTError(f"--style_weights: {len(weights)} weights for {self.num_styles} styles "
                           f"({', '.join(self.style_names)})")
        if (weights < 0).any() or weights.sum() <= 0:
            raise NSTError("--style_weights: must be non-negative with a positive sum")
        return tf.constant(weights / weights.sum())

    def __call__(self, batch, style_weights):
        x = tf.convert_to_tensor(batch, tf.float32)
        return tf.clip_by_value(self._fn(x, style_weights), 0.0, 1.0).numpy()


def _saved_model_dir(path):
    """``path`` or its highest integer version folder if it holds a SavedModel, else None."""
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    versions = [e for e in os.listdir(path) if e.isdigit()] if os.path.isdir(path) else []
    for version in sorted(versions, key=int, reverse=True):
        candidate = os.path.join(path, version)
        if os.path.isfile(os.path.join(candidate, SAVED_MODEL_FILE)):
            return candidate
    return None


def _jobs(config):
    """``([(input, output)], target)``: the files to write and the file or folder they go to."""
    content = config.content
    if os.path.isdir(content):
        inputs = images.list_images(content)
        if not inputs:
            raise NSTError(f"--content: {content}: no image files found")
        out_dir = config.output or os.path.normpath(content) + "_stylized"
        if os.path.splitext(out_dir)[1].lower() in images.SAVE_FORMATS:
            raise NSTError(f"--output: {out_dir}: must be a folder when --content is a folder")
        jobs = [(path, os.path.join(out_dir, _output_name(os.path.relpath(path, content)))) for path in inputs]
        return jobs, out_dir
    if not os.path.exists(content):
        raise NSTError(f"--content: {content}: no such file or directory")
    output = config.output or _output_name(os.path.basename(content), suffix="_stylized")
    if os.path.isdir(output):
        output = os.path.join(output, _output_name(os.path.basename(content)))
    if os.path.splitext(output)[1].lower() not in images.SAVE_FORMATS:
        raise NSTError(f"--output: {output}: use a .png, .jpg or .jpeg file name (or a folder)")
    return [(content, output)], output


def _output_name(relative, suffix=""):
    stem, ext = os.path.splitext(relative)
    return stem + suffix + (ext if ext.lower() in images.SAVE_FORMATS else ".png")


def _load(path, max_side):
    image = images.load_image(path)
    if max_side and max(image.shape[:2]) > max_side:
        image = images.resize_longest_side(image, max_side)
    return image


def stylize_files(config, progress=True):
    """Stylize ``config.content`` (file or folder); returns ``(target file or folder, count)``."""
    if config.preserve_color not in images.PRESERVE_COLOR_MODES:
        raise NSTError(f"--preserve_color: one of {', '.join(images.PRESERVE_COLOR_MODES)}")
    stylizer = Stylizer(config.model, config.precision)
    mix = stylizer.style_mix(config.style_weights)
    jobs, target = _jobs(config)
    # Read every input once before writing anything, so one bad file fails the
    # run up front; only the sizes are kept (to batch equal sizes), not the pixels.
    by_shape = {}
    for src, dst in jobs:
        by_shape.setdefault(_load(src, config.max_side).shape, []).append((src, dst))
    bar = ProgressBar(len(jobs), "stylize", enabled=progress)
    done = 0
    for group in by_shape.values():
        for start in range(0, len(group), config.batch_size):
            chunk = group[start : start + config.batch_size]
            inputs = [_load(src, config.max_side) for src, _ in chunk]
            outputs = stylizer(np.stack(inputs), mix)
            for image, out, (_, dst) in zip(inputs, outputs, chunk):
                images.save_image(dst, images.preserve_color(out, image, mode=config.preserve_color))
            done += len(chunk)
            bar.update(done)
    bar.close()
    return target, len(jobs)

