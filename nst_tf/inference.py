"""Apply a trained image-to-image net to image files and folders.

Two entry points share one runner (:func:`run_files`):

* :func:`stylize_files` (``nst-stylize --model=DIR``): a fast or multi-style net,
  or an arbitrary-style (AdaIN) net with the paintings given by ``style_images``;
* :func:`translate` (``nst-translate``): a CycleGAN generator.

The net (:class:`Stylizer`, :class:`ArbitraryStylizer` for AdaIN) is a training
output dir (``model_config.json`` + checkpoints) of nst-train-fast,
nst-train-multistyle, nst-train-arbitrary or nst-train-cyclegan, or
a SavedModel exported by nst-export (a version folder, or the export folder
whose highest version is used), called through its ``stylize_tensor``
signature: float32 RGB [0, 255] NHWC images (+ ``style_weights`` [N] for
multi-style nets).

The input is one image or a folder (searched recursively; the output folder
mirrors its layout, named by :func:`output_names`, and is left out of the
inputs when it lies inside the input folder). Outputs are checked before any
work: writable, and none of them an input. Every input is read once before
anything is written, so one bad file fails the run with nothing half-done.
Images are processed at full size (or shrunk to ``max_side``), in batches of
equal-sized images, with one progress bar; each output is written atomically. The nets are fully
convolutional: any size from :data:`MIN_INPUT_SIDE` up comes back unchanged. A
multi-style net takes ``style_weights``: one weight per style, normalised to a
convex mix (one-hot picks a style). An arbitrary-style net takes one or more
paintings, mixed by ``style_weights`` (equal by default), ``alpha`` (the
content-style trade-off) and an optional ``mask`` that gives the first of two
paintings to its white pixels and the second to the black ones.
"""

import collections
import dataclasses
import json
import os
from typing import Optional
from typing import Sequence

import numpy as np
import tensorflow as tf

from nst_tf import fileio
from nst_tf import images
from nst_tf.config import check_fields
from nst_tf.config import option
from nst_tf.errors import NSTError
from nst_tf.errors import first_line
from nst_tf.models.arbitrary import StyleVector
from nst_tf.precision import PRECISIONS
from nst_tf.progress import ProgressBar

SAVED_MODEL_FILE = "saved_model.pb"
EXPORT_INFO = os.path.join("assets.extra", "nst_tf.json")
# The smallest input side the nets take: their first 9x9 (fast nets) or 7x7
# (CycleGAN) convolution reflection-pads by 4 or 3 pixels, which needs more
# pixels than the padding, and after the two stride-2 downsamplings the 3x3
# reflection pads still need 2 px.
MIN_INPUT_SIDE = 8
TRANSLATE_FORMATS = ("png", "jpg")
DIRECTIONS = ("a2b", "b2a")


@dataclasses.dataclass
class InferenceConfig:
    model: str = option(
        help="Trained feed-forward model directory (nst-train-fast / nst-train-multistyle) "
        "or a SavedModel exported by nst-export."
    )
    content: str = option(help="An image file or a folder (searched recursively).")
    output: Optional[str] = option(None, "A file (one image) or a folder; default beside the content.")
    style_images: Sequence[str] = option(
        (), "An arbitrary-style model's painting (repeat to mix several).", flag="style", multi=True
    )
    style_weights: Optional[Sequence[float]] = option(
        None,
        "Mix of the styles, one weight each: a multi-style net's (default: the first style) or the "
        "--style paintings of an arbitrary-style net (default: equal).",
    )
    alpha: float = option(
        1.0, "An arbitrary-style net's content-style trade-off: 1 full style, 0 the photo as the decoder renders it."
    )
    mask: Optional[str] = option(
        None,
        "An arbitrary-style net's mask, of the content's size: the first --style where it is white, "
        "the second where it is black.",
    )
    style_size: int = option(
        512, "Longest side the --style paintings are resized to before encoding (0: as they are).", min=0
    )
    preserve_color: str = option("none", images.PRESERVE_COLOR_HELP, choices=images.PRESERVE_COLOR_MODES)
    max_side: Optional[int] = option(None, "Shrink larger inputs to this longest side first.", min=1)
    batch_size: int = option(4, "Images of equal size per forward pass.", min=1)
    precision: str = option(
        "float32",
        "Compute precision of a training dir's net; a SavedModel's is fixed when it is exported.",
        choices=PRECISIONS,
    )

    def __post_init__(self):
        _check_run_settings(self.batch_size, self.max_side)
        check_fields(self)
        self.style_images = tuple(self.style_images)
        if self.preserve_color == "histogram" and not self.style_images:
            raise NSTError(
                "--preserve_color=histogram recolours the style images before optimising, and a "
                "trained net's style is fixed; use --preserve_color=output_histogram to match the "
                "output to the photo"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise NSTError(f"--alpha: must be in [0, 1], not {self.alpha}")
        if self.style_size < 0:
            raise NSTError(f"--style_size: must be >= 0 (0: as they are), not {self.style_size}")
        if self.mask is not None and len(self.style_images) != 2:
            raise NSTError(
                f"--mask: needs two --style paintings (white: the first, black: the second), got {len(self.style_images)}"
            )
        if self.mask is not None and self.style_weights is not None:
            raise NSTError("--style_weights: not with --mask, which gives each painting its own region")


@dataclasses.dataclass
class TranslateConfig:
    """``nst-translate``: a CycleGAN run's generator over a file or folder, into the ``output`` folder."""

    model: str = option(
        help="Training output dir of nst-train-cyclegan, or a SavedModel nst-export wrote "
        "from one (for the same --direction)."
    )
    input: str = option(help="An image file or a folder of images (searched recursively).")
    output: str = option(help="Output folder: <output>/<input name>.<format>.")
    direction: str = option("a2b", "a2b uses generator_a2b (A -> B), b2a the inverse.", choices=DIRECTIONS)
    batch_size: int = option(4, "Images per forward pass (same-sized images are batched).", min=1)
    max_side: int = option(0, "Resize so the longest side is at most this first (0: full size).", min=0)
    format: str = option("png", "Output format.", choices=TRANSLATE_FORMATS)

    def __post_init__(self):
        _check_run_settings(self.batch_size, self.max_side)
        check_fields(self)


def _check_run_settings(batch_size, max_side):
    if batch_size < 1:
        raise NSTError(f"--batch_size: must be >= 1, not {batch_size}")
    if max_side is not None and max_side < 0:
        raise NSTError(f"--max_side: must be >= 0, not {max_side}")


class Stylizer:
    """A trained net as ``stylizer(images [B, H, W, 3] in [0, 1], style_weights) -> [0, 1]``.

    ``direction`` None loads a fast or multi-style net; ``"a2b"``/``"b2a"`` the
    CycleGAN generator of that direction (whose [-1, 1] range is mapped to
    [0, 1] here). A SavedModel is whatever nst-export wrote; with a direction,
    one exported from a CycleGAN must have been exported for that direction.
    """

    def __init__(self, path, precision="float32", direction=None):
        self.path = path
        self.direction = direction
        if not os.path.isdir(path):
            what = "not a folder" if os.path.exists(path) else "no such folder"
            raise NSTError(f"--model: {path}: {what} (a training output dir or an exported SavedModel)")
        saved_model = saved_model_dir(path)
        if saved_model:
            if precision != "float32":
                raise NSTError(
                    f"--precision: {path} is a SavedModel, whose precision was fixed "
                    "when it was exported (nst-export --precision)"
                )
            self._init_saved_model(saved_model)
        else:
            self._init_training_dir(path, precision)

    min_side = MIN_INPUT_SIDE

    def _init_training_dir(self, path, precision):
        from nst_tf.training import base  # pylint: disable=import-outside-toplevel

        description = base.read_model_config(path)
        method = description.get("method")
        self._check_method(path, method)
        self.style_names = list(description.get("style_names", []))
        self.num_styles = 0
        if self.direction is not None:
            name = f"generator_{self.direction}"
            if name not in description.get("models", {}):
                present = sorted(n for n in description.get("models", {}) if n.startswith("generator_"))
                hint = f"it has {', '.join(present)}: use --direction={present[0][-3:]}" if present else "no generator"
                raise NSTError(f"--direction: {path} has no {name} ({hint})")
            generator = base.load_trained_model(path, name, compute_precision=precision)
            # The generator works in [-1, 1].
            self._fn = tf.function(
                lambda x, w: (generator(x * 2.0 - 1.0, training=False) + 1.0) / 2.0, reduce_retracing=True
            )
            return
        model = base.load_trained_model(path, "model", compute_precision=precision)
        self.num_styles = getattr(model, "num_styles", 0) if method == "multistyle" else 0
        if self.num_styles:
            self._fn = tf.function(lambda x, w: model((x, w)), reduce_retracing=True)
        else:
            self._fn = tf.function(lambda x, w: model(x), reduce_retracing=True)

    def _check_method(self, path, method):
        """NSTError naming ``method`` (the run's, or the export's model type) if this command does not take it."""
        if self.direction is not None and method != "cyclegan":
            raise NSTError(
                f"--model: {path}: a {method!r} model; translate takes nst-train-cyclegan runs"
                + (" (use nst-stylize --model)" if method in ("fast", "multistyle") else "")
            )
        if self.direction is None and method == ARBITRARY_METHOD:
            raise NSTError(f"--style: {path} is an arbitrary-style model: give the painting(s) to stylize with")
        if self.direction is None and method not in ("fast", "multistyle"):
            raise NSTError(
                f"--model: {path}: a {method!r} model; stylize takes fast or multistyle nets"
                + (" (use nst-translate)" if method == "cyclegan" else "")
            )

    def _init_saved_model(self, path):
        info = {}
        if os.path.isfile(os.path.join(path, EXPORT_INFO)):
            with open(os.path.join(path, EXPORT_INFO), encoding="utf-8") as f:
                info = json.load(f)
        if "model_type" in info:  # what nst-export made it from
            self._check_method(path, info["model_type"])
        if os.path.getsize(os.path.join(path, SAVED_MODEL_FILE)) == 0:
            # TensorFlow reads an empty file as a SavedModel without graphs and asks for tags.
            raise NSTError(f"--model: {path}: unreadable SavedModel ({SAVED_MODEL_FILE} is empty)")
        try:
            loaded = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as exc:
            # A cut-short saved_model.pb, or variables that do not match it.
            raise NSTError(f"--model: {path}: unreadable SavedModel ({first_line(exc)})") from None
        if "stylize_tensor" not in loaded.signatures:
            raise NSTError(f"--model: {path}: SavedModel has no stylize_tensor signature")
        signature = loaded.signatures["stylize_tensor"]
        spec = signature.structured_input_signature[1].get("style_weights")
        self.num_styles = int(spec.shape[0]) if spec is not None else 0
        self.style_names = list(info.get("style_names", []))
        exported = info.get("direction")
        if self.direction is not None and exported is not None and exported != self.direction:
            raise NSTError(f"--direction: {path} is the {exported} generator (exported with --direction={exported})")
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
            raise NSTError(
                f"--style_weights: {len(weights)} weights for {self.num_styles} styles ({', '.join(self.style_names)})"
            )
        if not np.isfinite(weights).all():
            raise NSTError(f"--style_weights: must be finite numbers, got {','.join(map(str, weights))}")
        if (weights < 0).any() or weights.sum() <= 0:
            raise NSTError("--style_weights: must be non-negative with a positive sum")
        return tf.constant(weights / weights.sum())

    def check_input(self, path, shape):
        """Raise NSTError if the image ``path`` of ``shape`` cannot be stylized; a fixed-style net takes any."""

    def __call__(self, batch, style_weights):
        x = tf.convert_to_tensor(batch, tf.float32)
        return tf.clip_by_value(self._fn(x, style_weights), 0.0, 1.0).numpy()


# The "method" of an nst-train-arbitrary run in its model_config.json.
ARBITRARY_METHOD = "arbitrary"


def _is_arbitrary_run(path):
    """Whether ``path`` is the training output dir of an arbitrary-style (AdaIN) net."""
    from nst_tf.training import base  # pylint: disable=import-outside-toplevel

    if saved_model_dir(path) or not os.path.isfile(os.path.join(path, base.MODEL_CONFIG)):
        return False
    return base.read_model_config(path).get("method") == ARBITRARY_METHOD


class ArbitraryStylizer:
    """An arbitrary-style (AdaIN) net with its paintings, for :func:`run_files`.

    ``stylizer.style_mix(weights)`` is the :class:`~nst_tf.models.arbitrary.StyleVector` of the
    paintings mixed by ``weights`` (the foreground and background vectors with a ``mask``), and
    ``stylizer(batch, mix)`` stylizes a batch with it. The paintings are encoded once per run,
    except with ``preserve_color="histogram"``, which recolours them to each photo first
    (:func:`nst_tf.images.recolor_style`, AdaIN's own colour preservation) and so encodes them
    per photo.

    Args:
      path: the training output dir of an nst-train-arbitrary run.
      style_images: the painting files.
      style_size: their longest side before encoding (0: as they are).
      alpha: the content-style trade-off.
      mask: optional mask image file, of the content images' size (see :meth:`check_input`).
      max_side: the longest side the content images are shrunk to, if larger; the mask too.
      preserve_color: an :data:`nst_tf.images.PRESERVE_COLOR_MODES` mode.
      precision: the compute precision.
    """

    def __init__(
        self,
        path,
        style_images,
        *,
        style_size=512,
        alpha=1.0,
        mask=None,
        max_side=None,
        preserve_color="none",
        precision="float32",
    ):
        from nst_tf.training import base  # pylint: disable=import-outside-toplevel

        if not style_images:
            raise NSTError(f"--style: {path} is an arbitrary-style model: give the painting(s) to stylize with")
        self.paintings = [images.load_image(p, max_side=style_size or None) for p in style_images]
        self.mask_path = mask
        # Black and white, or any grey: the model takes the majority per feature position.
        self._mask = None if mask is None else load_input(mask, max_side, min_side=1).mean(axis=-1, keepdims=True)
        self._recolor = preserve_color == "histogram"
        self.model = base.load_trained_model(path, "model", compute_precision=precision)
        self.min_side = max(MIN_INPUT_SIDE, self.model.min_side)
        self.alpha = float(alpha)
        self._vector = tf.function(self.model.style_vector, reduce_retracing=True)
        self._stylize = tf.function(self.model.stylize, reduce_retracing=True)

    def _weights(self, weights):
        count = len(self.paintings)
        if self.mask_path is not None:
            return None
        if not weights:
            return np.full([count], 1.0 / count, np.float32)
        weights = np.asarray(weights, np.float32)
        if weights.shape != (count,):
            raise NSTError(f"--style_weights: {len(weights)} weights for {count} --style paintings")
        if (weights < 0).any() or weights.sum() <= 0:
            raise NSTError("--style_weights: must be non-negative with a positive sum")
        return weights / weights.sum()

    def _vectors(self, paintings):
        return StyleVector.concat([self._vector(tf.constant(p[np.newaxis])) for p in paintings])

    def style_mix(self, weights):
        """The style to stylize with: ``(vector, None)`` for a mix of the paintings, ``(foreground,
        background)`` with a mask; with histogram colour preservation, the weights instead."""
        weights = self._weights(weights)
        if self._recolor:
            return weights
        return self._mixed(self._vectors(self.paintings), weights)

    def _mixed(self, vectors, weights):
        if weights is None:
            return StyleVector(vectors.mean[:1], vectors.std[:1]), StyleVector(vectors.mean[1:], vectors.std[1:])
        return vectors.blend(weights), None

    def check_input(self, path, shape):
        """NSTError unless the mask has the size of the content image ``path`` (both shrunk to ``max_side``)."""
        if self._mask is not None and self._mask.shape[:2] != tuple(shape[:2]):
            height, width = self._mask.shape[:2]
            raise NSTError(
                f"--mask: {self.mask_path} is {width}x{height} but {path} is {shape[1]}x{shape[0]} "
                "(the mask must have the content image's size)"
            )

    def __call__(self, batch, mix):
        x = tf.convert_to_tensor(batch, tf.float32)
        if self._recolor:
            mixes = [
                self._mixed(self._vectors([images.recolor_style(p, photo, "histogram") for p in self.paintings]), mix)
                for photo in batch
            ]
            style = StyleVector.concat([m[0] for m in mixes])
            background = None if mix is not None else StyleVector.concat([m[1] for m in mixes])
        else:
            style, background = mix
        mask = None if self._mask is None else tf.constant(self._mask[np.newaxis])
        return self._stylize(x, style, self.alpha, mask, background).numpy()


def saved_model_dir(path):
    """``path`` or its highest integer version folder if it holds a SavedModel, else None."""
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    versions = [e for e in os.listdir(path) if e.isdigit()] if os.path.isdir(path) else []
    for version in sorted(versions, key=int, reverse=True):
        candidate = os.path.join(path, version)
        if os.path.isfile(os.path.join(candidate, SAVED_MODEL_FILE)):
            return candidate
    return None


def _output_name(relative, suffix="", fmt=None, keep_extension=False):
    """``relative`` with ``suffix`` on its stem and the ``fmt`` extension (default: its own, if savable, else png).

    ``keep_extension``: the whole name is the stem (``a.bmp`` -> ``a.bmp.png``).
    """
    stem, ext = os.path.splitext(relative)
    if keep_extension:
        stem = relative
    if fmt:
        ext = "." + fmt
    return stem + suffix + (ext if ext.lower() in images.SAVE_FORMATS else ".png")


def output_names(relatives, fmt=None):
    """The output name of each input of a folder (its path relative to the folder), no two the same.

    An input keeps its name with the output extension: ``fmt``, or by default its own
    if it is an output format (png, jpg, jpeg), else png (``b.gif`` -> ``b.png``).
    Where inputs of one stem would get the same name (``a.png`` and ``a.bmp`` ->
    ``a.png``), the input whose name that is keeps it, and the others keep their
    extension in the stem (``a.bmp`` -> ``a.bmp.png``). NSTError in the rare case
    that names still clash (inputs ``a.bmp`` and ``a.bmp.png``).
    """
    plain = [_output_name(r, fmt=fmt) for r in relatives]
    shared = {name for name, n in collections.Counter(plain).items() if n > 1}
    names = [
        _output_name(r, fmt=fmt, keep_extension=True) if name in shared and name != r else name
        for r, name in zip(relatives, plain)
    ]
    first = {}
    for relative, name in zip(relatives, names):
        if name in first:
            raise NSTError(f"--output: {first[name]} and {relative} have the same output name {name}; rename one")
        first[name] = relative
    return names


def _input_file(source, flag):
    if not os.path.exists(source):
        raise NSTError(f"{flag}: {source}: no such file or directory")
    return source


def _file_job(source, output):
    """``[(source, output)]``, once ``output`` is checked: writable, and not the input."""
    fileio.check_writable(output, "--output")
    fileio.refuse_inputs([output], [source], "--output")
    return [(source, output)]


def _folder_jobs(folder, out_dir, flag, fmt=None):
    """``[(input, output)]`` of every image under ``folder``, mirrored into ``out_dir`` (checked first).

    ``out_dir`` must not be ``folder``; inside it, it is not searched for inputs
    (its files are an earlier run's outputs).
    """
    fileio.refuse_inputs([out_dir], [folder], "--output")
    fileio.check_writable(out_dir, "--output", folder=True)
    paths = images.list_images(folder, exclude=out_dir)
    if not paths:
        raise NSTError(f"{flag}: {folder}: no image files found")
    names = output_names([os.path.relpath(path, folder) for path in paths], fmt)
    jobs = [(path, os.path.join(out_dir, name)) for path, name in zip(paths, names)]
    # An output can still land on an input: --content=out/x, --output=out, and out/x/x/a.png.
    fileio.refuse_inputs([dst for _, dst in jobs], paths, "--output")
    return jobs


def load_input(path, max_side=None, min_side=MIN_INPUT_SIDE):
    """An input image in [0, 1], shrunk to ``max_side`` when larger; ImageError when smaller than ``min_side``."""
    image = images.load_image(path, min_side=min_side)
    if max_side and max(image.shape[:2]) > max_side:
        image = images.resize_longest_side(image, max_side)
        height, width = image.shape[:2]
        if min(height, width) < min_side:
            raise images.ImageError(
                f"{path}: image is {width}x{height} after shrinking to --max_side={max_side}, "
                f"smaller than the minimum side of {min_side} px"
            )
    return image


def run_files(
    stylizer,
    jobs,
    *,
    style_weights=None,
    max_side=None,
    batch_size=4,
    preserve_color="none",
    desc="stylize",
    progress=True,
):
    """Apply ``stylizer`` to every ``(input, output)`` file pair of ``jobs``; returns the outputs written.

    Every input is read once before anything is written, so one bad file fails
    the run up front; only the sizes are kept (to batch equal sizes), not the
    pixels. ``preserve_color`` is an :func:`nst_tf.images.preserve_color` mode.
    """
    mix = stylizer.style_mix(style_weights)
    by_shape = {}
    for src, dst in jobs:
        shape = load_input(src, max_side, stylizer.min_side).shape
        stylizer.check_input(src, shape)
        by_shape.setdefault(shape, []).append((src, dst))
    written = []
    with ProgressBar(len(jobs), desc, enabled=progress) as bar:
        for group in by_shape.values():
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                inputs = [load_input(src, max_side, stylizer.min_side) for src, _ in chunk]
                outputs = stylizer(np.stack(inputs), mix)
                for image, out, (_, dst) in zip(inputs, outputs, chunk):
                    images.save_image(dst, images.preserve_color(out, image, mode=preserve_color))
                    written.append(dst)
                bar.update(len(written))
    return written


def _stylize_jobs(config):
    """``([(input, output)], target)``: the files to write and the file or folder they go to."""
    if os.path.isdir(config.content):
        out_dir = config.output or os.path.normpath(config.content) + "_stylized"
        if os.path.splitext(out_dir)[1].lower() in images.SAVE_FORMATS:
            raise NSTError(f"--output: {out_dir}: must be a folder when --content is a folder")
        return _folder_jobs(config.content, out_dir, "--content"), out_dir
    content = _input_file(config.content, "--content")
    output = config.output or _output_name(os.path.basename(content), suffix="_stylized")
    if os.path.isdir(output):
        output = os.path.join(output, _output_name(os.path.basename(content)))
    if os.path.splitext(output)[1].lower() not in images.SAVE_FORMATS:
        raise NSTError(f"--output: {output}: use a .png, .jpg or .jpeg file name (or a folder)")
    return _file_job(content, output), output


def _exported_model_type(path):
    """The ``model_type`` nst-export recorded in the SavedModel at ``path`` (or its newest version), or None."""
    saved = saved_model_dir(path)
    info = os.path.join(saved, EXPORT_INFO) if saved else None
    if not info or not os.path.isfile(info):
        return None
    try:
        with open(info, encoding="utf-8") as f:
            return json.load(f).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def open_stylizer(config):
    """The :class:`Stylizer` or :class:`ArbitraryStylizer` of an :class:`InferenceConfig`."""
    if _exported_model_type(config.model) == ARBITRARY_METHOD:
        # The exported graph takes its paintings per request; nst-stylize drives the training dir.
        raise NSTError(
            f"--model: {config.model} is an exported arbitrary-style SavedModel; give nst-stylize its "
            "training dir, or serve the export with nst-serve"
        )
    if _is_arbitrary_run(config.model):
        return ArbitraryStylizer(
            config.model,
            config.style_images,
            style_size=config.style_size,
            alpha=config.alpha,
            mask=config.mask,
            max_side=config.max_side,
            preserve_color=config.preserve_color,
            precision=config.precision,
        )
    for given, flag in ((config.style_images, "--style"), (config.mask, "--mask"), (config.alpha != 1.0, "--alpha")):
        if given:
            raise NSTError(
                f"{flag}: {config.model} is a net with trained styles; {flag} needs an arbitrary-style model"
            )
    return Stylizer(config.model, config.precision)


def stylize_files(config, progress=True):
    """Stylize ``config.content`` (file or folder); returns ``(target file or folder, count)``."""
    jobs, target = _stylize_jobs(config)
    # An arbitrary-style run's paintings and mask are inputs too.
    others = list(config.style_images) + ([config.mask] if config.mask else [])
    fileio.refuse_inputs([output for _, output in jobs], others, "--output")
    stylizer = open_stylizer(config)
    run_files(
        stylizer,
        jobs,
        style_weights=config.style_weights,
        max_side=config.max_side,
        batch_size=config.batch_size,
        preserve_color=config.preserve_color,
        progress=progress,
    )
    return target, len(jobs)


def translate(config, progress=True):
    """Translate ``config.input`` (file or folder) into the ``config.output`` folder; returns the files written."""
    if os.path.isdir(config.input):
        jobs = _folder_jobs(config.input, config.output, "--input", fmt=config.format)
    else:
        source = _input_file(config.input, "--input")
        fileio.check_writable(config.output, "--output", folder=True)
        jobs = _file_job(source, os.path.join(config.output, _output_name(os.path.basename(source), fmt=config.format)))
    stylizer = Stylizer(config.model, direction=config.direction)
    return run_files(
        stylizer,
        jobs,
        max_side=config.max_side,
        batch_size=config.batch_size,
        desc=f"translate {config.direction}",
        progress=progress,
    )
