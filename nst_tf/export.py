"""SavedModel (and TFLite) export of our models, in the layout TF Serving reads.

``export(config)`` writes ``<export_dir>/<version>/``, ``version`` one more
than the largest integer folder already there, through a temporary directory
renamed into place, so TF Serving and ``nst-serve`` never see a half-written
version. Every model is a ``tf.Module`` whose ``tf.function`` s carry explicit
input signatures; all tensors are float32 RGB in [0, 255], NHWC:

=============  ==================  =============================================
model_type     signature           inputs -> outputs
=============  ==================  =============================================
fast,          ``serving_default`` ``image_bytes`` [B] JPEG/PNG/GIF/BMP strings
cyclegan                           -> ``image_bytes`` [B] PNG strings
               ``stylize_tensor``  ``images`` [B, H, W, 3] -> ``images``
multistyle     both of the above, each also taking ``style_weights`` [N]
features       ``serving_default`` ``images`` -> ``<layer>`` feature maps and
               = ``features``      ``<layer>_gram`` [B, C, C] per-position Grams
               ``losses``          ``images``, ``content_images``,
                                   ``style_images`` [1, H, W, 3] -> ``total``,
                                   ``content``, ``style``, ``tv`` (and
                                   weighted ``laplacian``, ``pixel``) terms
gatys          ``serving_default`` ``content_bytes``, ``style_bytes`` [B]
                                   -> ``image_bytes`` [B]
               ``stylize_tensor``  ``content``, ``style`` [1, H, W, 3]
                                   -> ``images``
arbitrary      ``serving_default`` ``content_bytes`` [B], ``style_bytes`` [1|B],
                                   ``alpha`` [1|B] -> ``image_bytes`` [B]
               ``stylize_tensor``  ``content`` [B, H, W, 3], ``style``
                                   [1|B, H', W', 3], ``alpha`` -> ``images``
               ``style_vector``    ``style_bytes`` [S] -> ``style_vector``
                                   [S, 2C] (means, then stds)
               ``stylize_with_     ``content_bytes`` [B], ``style_vector``
               vector``            [1|B, 2C], ``alpha`` -> ``image_bytes``
=============  ==================  =============================================

``max_side`` > 0 shrinks inputs whose longest side is larger, inside the graph,
so a served model bounds its own cost. Outputs named ``*_bytes`` are what TF
Serving's REST API returns base64-encoded. ``assets.extra/nst_tf.json`` in
each version records how it was made (model type, style names, source).

The Gatys model runs ``num_steps`` Adam steps (a ``tf.while_loop``) or L-BFGS
iterations (tfp's, :func:`nst_tf.lbfgs.minimize_in_graph`) from the content image
inside the graph, with the loss of
:class:`nst_tf.gatys.StyleTransferObjective`: slow, but one self-contained
"any style" endpoint. Both it and the ``features`` model's ``losses`` evaluate
:class:`nst_tf.losses.PerceptualLoss` with ``gatys_config.loss``.

TFLite (``format="tflite"``, fast and multistyle nets): ``model.tflite`` with
a fixed ``[1, tflite_size, tflite_size, 3]`` input, because TFLite kernels are
planned for static shapes; resize on the device. The arbitrary-style model is
two files, as magenta's mobile model splits it: ``style_vector.tflite``
(a ``[1, tflite_style_size, tflite_style_size, 3]`` painting -> its
``[1, 2C]`` vector) and ``transfer.tflite`` (``content``
``[1, tflite_size, tflite_size, 3]``, ``style_vector`` ``[1, 2C]``, ``alpha``
``[1]`` -> ``images``), both builtin ops only.

``precision="bfloat16"`` (or ``float16``) exports a graph whose network computes
in that type (:mod:`nst_tf.precision`); the signatures still take and return
float32. It is fixed in the SavedModel: the graph holds the casts.
"""

import dataclasses
import errno
import json
import os
from typing import Optional

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants  # pylint: disable=no-name-in-module

from nst_tf import fileio
from nst_tf import gatys
from nst_tf import images
from nst_tf import lbfgs
from nst_tf import losses
from nst_tf import precision
from nst_tf.config import check_fields
from nst_tf.config import option
from nst_tf.errors import NSTError
from nst_tf.models.arbitrary import StyleVector

MODEL_TYPES = ("fast", "multistyle", "cyclegan", "arbitrary", "features", "gatys")
# The optimisers that run inside a graph; the preview's backtracking L-BFGS steps in Python.
GATYS_OPTIMIZERS = ("lbfgs", "adam")
FORMATS = ("saved_model", "tflite")
DIRECTIONS = ("a2b", "b2a")
# model_type -> the "method" a training output dir must record in model_config.json.
_TRAINED_METHODS = {"fast": "fast", "multistyle": "multistyle", "cyclegan": "cyclegan", "arbitrary": "arbitrary"}
TFLITE_FILE = "model.tflite"
# The arbitrary-style model's TFLite pair: the painting's statistics, then the transfer.
TFLITE_STYLE_FILE = "style_vector.tflite"
TFLITE_TRANSFER_FILE = "transfer.tflite"
TFLITE_MODEL_TYPES = ("fast", "multistyle", "arbitrary")
INFO_FILE = os.path.join("assets.extra", "nst_tf.json")


@dataclasses.dataclass
class ExportConfig:
    """What to export and where; the ``nst-export`` flags map onto these fields.

    ``checkpoint`` is a training output directory (fast, multistyle, cyclegan, arbitrary).
    ``gatys_config.loss`` holds the feature network, layers and loss weights of
    the ``features`` and ``gatys`` models, and ``gatys_config`` the ``optimizer``
    (one of :data:`GATYS_OPTIMIZERS`), ``num_steps``, ``learning_rate`` (Adam)
    and ``lbfgs_history`` of the in-graph loop. ``precision``
    is the compute type of the exported network, whatever it trained in; it
    overrides ``gatys_config.precision``.
    """

    model_type: str = option(help="What to export.", choices=MODEL_TYPES)
    export_dir: str = option(help="Model folder; the new version is written to <export_dir>/<n+1>/.")
    checkpoint: Optional[str] = option(
        None,
        "Training output directory (fast, multistyle, cyclegan, arbitrary): model_config.json + checkpoints/.",
    )
    direction: str = option("a2b", "CycleGAN generator to export: a2b (generator_a2b) or b2a.", choices=DIRECTIONS)
    max_side: int = option(0, "Shrink inputs with a longer side than this inside the graph (0: no cap).", min=0)
    format: str = option(
        "saved_model",
        "saved_model (TF Serving) or tflite (fast, multistyle and arbitrary nets only).",
        choices=FORMATS,
    )
    tflite_size: int = option(256, "Fixed height and width of the TFLite model's input.", min=8)
    tflite_style_size: int = option(
        256, "Fixed height and width of the painting input of the arbitrary model's style_vector.tflite.", min=8
    )
    precision: str = option(
        "float32",
        "Compute type of the exported network. bfloat16 is about 2x faster on "
        "CPUs with AVX512-BF16 or AMX and slower elsewhere; the signatures stay float32.",
        choices=precision.PRECISIONS,
    )
    # nst-stylize's 300 steps: at 100 the Adam model's pictures kept a visible grain and
    # 2-3.6x the CLI preview's style ratio; 300 reach the preview's (docs/pages/export.md).
    gatys_config: gatys.GatysConfig = dataclasses.field(default_factory=lambda: gatys.GatysConfig(optimizer="adam"))

    def __post_init__(self):
        check_fields(self)
        if self.max_side < 0:
            raise NSTError(f"--max_side: must be >= 0 (0: no cap), not {self.max_side}")
        if self.format == "tflite" and self.model_type not in TFLITE_MODEL_TYPES:
            raise NSTError(f"--format=tflite: only fast, multistyle and arbitrary nets, not {self.model_type}")
        if self.format == "tflite" and self.precision != "float32":
            raise NSTError(f"--precision={self.precision}: the TFLite export is float32 only")
        for field in ("tflite_size", "tflite_style_size"):
            if getattr(self, field) < 8:
                raise NSTError(f"--{field}: must be at least 8, not {getattr(self, field)}")
        if self.model_type == "gatys" and self.gatys_config.optimizer not in GATYS_OPTIMIZERS:
            raise NSTError(
                f"--optimizer: the in-graph Gatys model runs {' or '.join(GATYS_OPTIMIZERS)}, "
                f"not {self.gatys_config.optimizer}"
            )
        if self.gatys_config.optimizer == "lbfgs":
            # In a graph L-BFGS is tfp's; the config (and the model's info file) says so.
            self.gatys_config = dataclasses.replace(self.gatys_config, lbfgs_line_search="hager_zhang")


# ------------------------------------------------------------------ graph helpers


def cap_longest_side(images, max_side):
    """Shrink ``[B, H, W, C]`` images in [0, 255] so that max(H, W) <= ``max_side`` (aspect kept).

    Smaller images pass unchanged. Antialiased bicubic, clipped to [0, 255]: the resize of
    :func:`nst_tf.images.resize_image` (Pillow's) to 1e-5, so that a served picture is the one
    ``nst-stylize`` makes and ``nst-eval`` scores. With bilinear filtering the exported Gatys
    model matched the Grams of a blurrier painting: 20x further from the painting by
    ``nst-eval`` than the same L-BFGS run on the CLI's resize, which looked much the same.
    """
    shape = tf.shape(images)
    size = shape[1:3]
    longest = tf.reduce_max(size)
    scale = tf.cast(max_side, tf.float32) / tf.cast(longest, tf.float32)
    new_size = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32), 1)

    def shrink():
        resized = tf.image.resize(images, new_size, method="bicubic", antialias=True)
        return tf.clip_by_value(resized, 0.0, 255.0)

    return tf.cond(longest > max_side, shrink, lambda: images)


def decode_input_image(data):
    """One encoded JPEG/PNG/GIF/BMP string -> ``[1, H, W, 3]`` float32 in [0, 255], upright.

    Every byte input of every exported model goes through here, so all of them decode as
    ``nst-stylize`` loads a file (:func:`nst_tf.images.decode_image_tensor`: the EXIF
    orientation applied, JPEGs through Pillow's IDCT) and a phone's portrait comes back upright.
    """
    return images.decode_image_tensor(data)[tf.newaxis] * 255.0


def encode_png(image):
    """``[1, H, W, 3]`` float in [0, 255] -> PNG string (rounded, clipped)."""
    pixels = tf.cast(tf.round(tf.clip_by_value(image[0], 0.0, 255.0)), tf.uint8)
    return tf.io.encode_png(pixels)


def _images_spec(name="images", batch=None, size=None):
    return tf.TensorSpec([batch, size, size, 3], tf.float32, name=name)


_BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")


def _graph_function(fn, *input_signature):
    """``tf.function`` with a fixed signature (none: traced per call), without autograph.

    The graphs use explicit ``tf.cond`` / ``tf.while_loop`` / ``tf.map_fn``,
    so there is nothing to convert, and tracing is faster without it.
    """
    signature = list(input_signature) if input_signature else None
    return tf.function(fn, input_signature=signature, autograph=False)


# ------------------------------------------------------------------------ modules


class StylizeModule(tf.Module):
    """A feed-forward image-to-image model with ``serving_default`` and ``stylize_tensor``.

    Args:
      model: a Keras model taking and returning RGB in ``model_range``, any
        H, W; called as ``model((images, style_weights))`` when ``num_styles``.
      num_styles: N of a multi-style net (adds the ``style_weights`` [N] input); 0 otherwise.
      model_range: (low, high) of the model's pixel values: (0, 1) for our
        style nets, (-1, 1) for the CycleGAN generators.
      max_side: if > 0, the longest side inputs are shrunk to in the graph.
    """

    def __init__(self, model, num_styles=0, model_range=(0.0, 1.0), max_side=0, name=None):
        super().__init__(name=name)
        self.model = model
        self.num_styles = int(num_styles)
        self._low, self._high = (float(v) for v in model_range)
        self._max_side = int(max_side)
        if self.num_styles:
            weights = tf.TensorSpec([self.num_styles], tf.float32, name="style_weights")

            def stylize_tensor(images, style_weights):
                return {"images": self.stylize(images, style_weights)}

            def serving_default(image_bytes, style_weights):
                return {"image_bytes": self.stylize_encoded(image_bytes, style_weights)}

            self._tensor_fn = stylize_tensor
            self.stylize_tensor = _graph_function(stylize_tensor, _images_spec(), weights)
            self.serving_default = _graph_function(serving_default, _BYTES_SPEC, weights)
        else:

            def stylize_tensor(images):  # pylint: disable=function-redefined
                return {"images": self.stylize(images)}

            def serving_default(image_bytes):  # pylint: disable=function-redefined
                return {"image_bytes": self.stylize_encoded(image_bytes)}

            self._tensor_fn = stylize_tensor
            self.stylize_tensor = _graph_function(stylize_tensor, _images_spec())
            self.serving_default = _graph_function(serving_default, _BYTES_SPEC)

    def stylize(self, images, style_weights=None):
        """[B, H, W, 3] in [0, 255] -> the model's output in [0, 255] (traceable)."""
        if self._max_side:
            images = cap_longest_side(images, self._max_side)
        x = images / 255.0 * (self._high - self._low) + self._low
        y = self.model((x, style_weights)) if self.num_styles else self.model(x)
        return (tf.cast(y, tf.float32) - self._low) / (self._high - self._low) * 255.0

    def stylize_encoded(self, image_bytes, style_weights=None):
        """[B] encoded images -> [B] PNG strings; images may differ in size, so one at a time."""
        return tf.map_fn(
            lambda data: encode_png(self.stylize(decode_input_image(data), style_weights)),
            image_bytes,
            fn_output_signature=tf.string,
        )

    def signatures(self):
        return {"serving_default": self.serving_default, "stylize_tensor": self.stylize_tensor}

    def tflite_functions(self, config):
        """``{file name: concrete function}``: ``stylize_tensor`` traced for one fixed
        ``[1, tflite_size, tflite_size, 3]`` input.

        A separate trace (not ``self.stylize_tensor``, whose signature is
        dynamic) so every shape in the graph is static, which TFLite's builtin
        kernels need.
        """
        specs = [_images_spec(batch=1, size=config.tflite_size)]
        if self.num_styles:
            specs.append(tf.TensorSpec([self.num_styles], tf.float32, name="style_weights"))
        return {TFLITE_FILE: _graph_function(self._tensor_fn).get_concrete_function(*specs)}


def _rows_for(values, batch, name):
    """``values`` ``[1 or B, ...]`` -> ``[B, ...]``: one row shared by every content image, or one each.

    An InvalidArgumentError naming the input otherwise (nst-serve answers it with a 400).
    """
    rows = tf.shape(values)[0]
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(rows, 1), tf.equal(rows, batch)),
        [f"{name}: needs 1 row or one per content image; rows, content images:", rows, batch],
    )
    with tf.control_dependencies([check]):
        shape = tf.concat([[batch], tf.shape(values)[1:]], 0)
        return tf.broadcast_to(values, shape)


def _check_alpha(alpha):
    check = tf.debugging.Assert(
        tf.reduce_all((alpha >= 0.0) & (alpha <= 1.0)), ["alpha: must be in [0, 1], got", alpha]
    )
    with tf.control_dependencies([check]):
        return tf.identity(alpha)


class ArbitraryModule(tf.Module):
    """AdaIN (:class:`nst_tf.models.ArbitraryStyleNet`): any photo in any painting's style.

    Pixels are float32 RGB in [0, 255]; ``alpha`` in [0, 1] is the content-style trade-off
    (1: full style). A painting's statistics, its style vector, are ``2C`` numbers (the
    encoder's channel means, then standard deviations; 1024 for VGG to relu4_1): a client
    computes them once with ``style_vector``, keeps them, mixes several styles with
    weights ``w`` as ``Σ w_s v_s / Σ w_s`` (:meth:`nst_tf.models.StyleVector.blend`), and
    sends them with every photo to ``stylize_with_vector``, which skips the painting's
    encoder pass. Style rows and ``alpha`` are given once for the whole batch or once per
    content image. ``max_side`` caps photos and paintings alike.
    """

    def __init__(self, model, max_side=0, name=None):
        super().__init__(name=name)
        self.model = model
        self._max_side = int(max_side)
        self.vector_size = 2 * int(model.decoder.input_channels)
        content_bytes = tf.TensorSpec([None], tf.string, name="content_bytes")
        style_bytes = tf.TensorSpec([None], tf.string, name="style_bytes")
        alpha = tf.TensorSpec([None], tf.float32, name="alpha")
        vector = tf.TensorSpec([None, self.vector_size], tf.float32, name="style_vector")
        self.serving_default = _graph_function(self._serving_default, content_bytes, style_bytes, alpha)
        self.stylize_tensor = _graph_function(
            self._stylize_tensor, _images_spec("content"), _images_spec("style"), alpha
        )
        self.style_vector = _graph_function(self._style_vector, style_bytes)
        self.stylize_with_vector = _graph_function(self._stylize_with_vector, content_bytes, vector, alpha)

    def _cap(self, images):
        return cap_longest_side(images, self._max_side) if self._max_side else images

    def vectors(self, style):
        """``[S, H, W, 3]`` paintings in [0, 255] -> their packed style vectors ``[S, 2C]``."""
        return self.model.style_vector(self._cap(style) / 255.0).to_tensor()

    def stylize(self, content, vectors, alpha):
        """``[B, H, W, 3]`` content in [0, 255], packed ``vectors`` ``[1 or B, 2C]`` and ``alpha``
        ``[1 or B]`` -> ``[B, H, W, 3]`` in [0, 255] (H, W after ``max_side``)."""
        alpha = tf.reshape(_check_alpha(alpha), [-1, 1, 1, 1])
        style = StyleVector.from_tensor(vectors)
        return self.model.stylize(self._cap(content) / 255.0, style, alpha) * 255.0

    def _stylize_encoded(self, content_bytes, vectors, alpha, style_name):
        batch = tf.shape(content_bytes)[0]
        vectors = _rows_for(vectors, batch, style_name)
        alpha = _rows_for(alpha, batch, "alpha")

        def one(item):
            data, vector, a = item
            return encode_png(self.stylize(decode_input_image(data), vector[tf.newaxis], a[tf.newaxis]))

        return tf.map_fn(one, (content_bytes, vectors, alpha), fn_output_signature=tf.string)

    def _style_vector(self, style_bytes):
        vectors = tf.map_fn(
            lambda data: self.vectors(decode_input_image(data))[0],
            style_bytes,
            fn_output_signature=tf.TensorSpec([self.vector_size], tf.float32),
        )
        return {"style_vector": vectors}

    def _serving_default(self, content_bytes, style_bytes, alpha):
        # Each painting is encoded once, however many photos share it.
        vectors = self._style_vector(style_bytes)["style_vector"]
        return {"image_bytes": self._stylize_encoded(content_bytes, vectors, alpha, "style_bytes")}

    def _stylize_with_vector(self, content_bytes, style_vector, alpha):
        return {"image_bytes": self._stylize_encoded(content_bytes, style_vector, alpha, "style_vector")}

    def _stylize_tensor(self, content, style, alpha):
        batch = tf.shape(content)[0]
        vectors = _rows_for(self.vectors(style), batch, "style")
        return {"images": self.stylize(content, vectors, _rows_for(alpha, batch, "alpha"))}

    def signatures(self):
        return {
            "serving_default": self.serving_default,
            "stylize_tensor": self.stylize_tensor,
            "style_vector": self.style_vector,
            "stylize_with_vector": self.stylize_with_vector,
        }

    def tflite_functions(self, config):
        """The TFLite pair, magenta's mobile split, at fixed sizes (TFLite plans static shapes):
        :data:`TFLITE_STYLE_FILE`, a painting ``style`` -> ``style_vector`` ``[1, 2C]``, and
        :data:`TFLITE_TRANSFER_FILE`, ``content``, ``style_vector``, ``alpha`` ``[1]`` -> ``images``.
        No ``max_side``: the device resizes to the fixed sizes."""
        for field in ("tflite_size", "tflite_style_size"):
            if getattr(config, field) < self.model.min_side:
                raise NSTError(
                    f"--{field}: this model needs at least {self.model.min_side}, not {getattr(config, field)}"
                )

        def style_vector(style):
            return {"style_vector": self.model.style_vector(style / 255.0).to_tensor()}

        def transfer(content, style_vector, alpha):
            style = StyleVector.from_tensor(style_vector)
            return {"images": self.model.stylize(content / 255.0, style, tf.reshape(alpha, [-1, 1, 1, 1])) * 255.0}

        return {
            TFLITE_STYLE_FILE: _graph_function(style_vector).get_concrete_function(
                _images_spec("style", batch=1, size=config.tflite_style_size)
            ),
            TFLITE_TRANSFER_FILE: _graph_function(transfer).get_concrete_function(
                _images_spec("content", batch=1, size=config.tflite_size),
                tf.TensorSpec([1, self.vector_size], tf.float32, name="style_vector"),
                tf.TensorSpec([1], tf.float32, name="alpha"),
            ),
        }


class FeaturesModule(tf.Module):
    """The frozen feature network and the Gatys loss, for reuse from any TF code.

    ``features(images)`` returns every requested layer's feature map and its
    per-position Gram matrix Ĝ = FᵀF / (H W) (``losses.gram_matrix``; divide by
    C for Johnson's normalisation). ``losses(images, content_images,
    style_images)`` returns the loss terms of ``config.loss`` (without the
    per-layer ones) for one image against one content and one style image.
    """

    def __init__(self, extractor, config, name=None):
        super().__init__(name=name)
        self.extractor = extractor
        self.config = config
        self.perceptual_loss = losses.PerceptualLoss(config.loss, extractor)
        self.features = _graph_function(self._features, _images_spec())
        self.losses = _graph_function(
            self._losses,
            _images_spec(batch=1),
            _images_spec("content_images", batch=1),
            _images_spec("style_images", batch=1),
        )

    def _features(self, images):
        maps = self.extractor(images / 255.0)
        outputs = {}
        for name, value in maps.items():
            outputs[name] = tf.cast(value, tf.float32)
            outputs[name + "_gram"] = losses.gram_matrix(value)
        return outputs

    def _losses(self, images, content_images, style_images):
        loss = self.perceptual_loss
        total, terms = loss(
            images / 255.0,
            loss.content_target(content_images / 255.0),
            loss.style_target([style_images[0] / 255.0], [1.0]),
        )
        # Signature outputs are flat names: the per-layer "style/<layer>" terms stay out.
        return {"total": total, **{name: value for name, value in terms.items() if "/" not in name}}

    def signatures(self):
        return {"serving_default": self.features, "features": self.features, "losses": self.losses}


def adam_update(x, m, v, gradient, step, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One Adam step (Kingma & Ba 2015, Alg. 1, with the bias correction folded into the rate).

        m_t = m + (1 - β1)(g - m),   v_t = v + (1 - β2)(g² - v)
        x_t = x - α m_t / (√v_t + ε),   α = lr √(1 - β2^t) / (1 - β1^t)

    Written as Keras' ``Adam`` computes it, so the in-graph loop follows
    :func:`nst_tf.gatys.optimize` step for step. ``step`` counts from 1.
    """
    step = tf.cast(step, tf.float32)
    m = m + (gradient - m) * (1.0 - beta_1)
    v = v + (tf.square(gradient) - v) * (1.0 - beta_2)
    alpha = learning_rate * tf.sqrt(1.0 - tf.pow(beta_2, step)) / (1.0 - tf.pow(beta_1, step))
    return x - m * alpha / (tf.sqrt(v) + epsilon), m, v


class GatysModule(tf.Module):
    """Gatys et al. style transfer of (content, style) pairs, optimised inside the graph.

    Starts from the content image (``init="content"``) and runs ``config.num_steps``
    iterations of ``config.optimizer``: Adam at a constant ``config.learning_rate``,
    clipping pixels to [0, 1] after each step, or L-BFGS with the Hager-Zhang line
    search (:func:`nst_tf.lbfgs.minimize_in_graph`), on the loss of
    :class:`nst_tf.gatys.StyleTransferObjective`. The style image is used at its
    own size (capped by ``max_side``, like the content).
    """

    def __init__(self, extractor, config, max_side=0, name=None):
        super().__init__(name=name)
        self.extractor = extractor
        self.config = config
        self.perceptual_loss = losses.PerceptualLoss(config.loss, extractor)
        self._max_side = int(max_side)
        self.stylize_tensor = _graph_function(
            self._stylize_tensor, _images_spec("content", batch=1), _images_spec("style", batch=1)
        )
        self.serving_default = _graph_function(
            self._serving_default,
            tf.TensorSpec([None], tf.string, name="content_bytes"),
            tf.TensorSpec([None], tf.string, name="style_bytes"),
        )

    def stylize(self, content, style):
        """[1, H, W, 3] content and style in [0, 255] -> the optimised image in [0, 255]."""
        if self._max_side:
            content = cap_longest_side(content, self._max_side)
            style = cap_longest_side(style, self._max_side)
        objective = gatys.StyleTransferObjective(
            self.perceptual_loss, content[0] / 255.0, [style[0] / 255.0], jit_compile=self.config.jit_compile
        )

        x = content / 255.0
        if self.config.optimizer == "lbfgs":
            x = lbfgs.minimize_in_graph(
                objective.value_and_gradient,
                x,
                max_iterations=self.config.num_steps,
                **gatys.lbfgs_options(self.config),
            )
            return x * 255.0

        def step(t, x, m, v):
            _, _, gradient = objective.terms_and_gradient(x)
            x, m, v = adam_update(x, m, v, gradient, t, self.config.learning_rate)
            return t + 1, tf.clip_by_value(x, 0.0, 1.0), m, v

        _, x, _, _ = tf.while_loop(
            lambda t, *_: t <= self.config.num_steps, step, (tf.constant(1), x, tf.zeros_like(x), tf.zeros_like(x))
        )
        return x * 255.0

    def _stylize_tensor(self, content, style):
        return {"images": self.stylize(content, style)}

    def _serving_default(self, content_bytes, style_bytes):
        def one(pair):
            return encode_png(self.stylize(decode_input_image(pair[0]), decode_input_image(pair[1])))

        return {"image_bytes": tf.map_fn(one, (content_bytes, style_bytes), fn_output_signature=tf.string)}

    def signatures(self):
        return {"serving_default": self.serving_default, "stylize_tensor": self.stylize_tensor}


# ------------------------------------------------------------------------- export


def next_version(export_dir):
    """One more than the largest integer-named folder in ``export_dir`` (1 when none)."""
    try:
        entries = os.listdir(export_dir)
    except FileNotFoundError:
        return 1
    return max((int(e) for e in entries if e.isdigit()), default=0) + 1


def load_model(config):
    """The trained Keras model ``config.checkpoint`` holds, checked against ``model_type``.

    Returns ``(model, model_config_json)``.
    """
    from nst_tf.training import base  # pylint: disable=import-outside-toplevel  # pulls in tf.data machinery

    if not config.checkpoint:
        raise NSTError(f"--checkpoint: required for --model_type={config.model_type}")
    if not os.path.isfile(os.path.join(config.checkpoint, base.MODEL_CONFIG)):
        raise NSTError(f"{config.checkpoint}: not a training output directory (no {base.MODEL_CONFIG})")
    description = base.read_model_config(config.checkpoint)
    method = description.get("method")
    if method != _TRAINED_METHODS[config.model_type]:
        raise NSTError(f"{config.checkpoint}: trained with method {method!r}, not {config.model_type!r}")
    name = f"generator_{config.direction}" if config.model_type == "cyclegan" else "model"
    return base.load_trained_model(config.checkpoint, name, compute_precision=config.precision), description


def build_module(config, model=None):
    """The ``tf.Module`` to export for ``config``.

    ``model`` replaces the Keras model otherwise loaded from the checkpoint
    (or, for ``features`` and ``gatys``, the feature extractor otherwise built
    from ``config.gatys_config``), and computes in its own precision.
    """
    if config.model_type in ("features", "gatys"):
        extractor = (
            model
            if model is not None
            else gatys.build_extractor(dataclasses.replace(config.gatys_config, precision=config.precision))
        )
        if config.model_type == "features":
            return FeaturesModule(extractor, config.gatys_config)
        return GatysModule(extractor, config.gatys_config, max_side=config.max_side)
    if model is None:
        model, _ = load_model(config)
    if config.model_type == "multistyle":
        return StylizeModule(model, num_styles=model.num_styles, max_side=config.max_side)
    if config.model_type == "arbitrary":
        return ArbitraryModule(model, max_side=config.max_side)
    model_range = (-1.0, 1.0) if config.model_type == "cyclegan" else (0.0, 1.0)
    return StylizeModule(model, model_range=model_range, max_side=config.max_side)


def _info(config, module, description):
    info = {
        "model_type": config.model_type,
        "format": config.format,
        "signatures": sorted(module.signatures()),
        "max_side": config.max_side,
        "precision": config.precision,
        "checkpoint": os.path.abspath(config.checkpoint) if config.checkpoint else None,
    }
    if config.model_type == "cyclegan":
        info["direction"] = config.direction
    if description and description.get("style_names"):
        info["style_names"] = list(description["style_names"])
    if config.model_type in ("features", "gatys"):
        info["gatys_config"] = {
            k: v
            for k, v in dataclasses.asdict(config.gatys_config).items()
            if k not in ("log_dir", "checkpoint_dir", "resume", "precision")
        }
    if config.model_type == "arbitrary":
        # Saved style vectors and cached ones are only valid with the encoder that made them.
        info["encoder_id"] = module.model.encoder_id
        info["style_vector_size"] = module.vector_size
    if config.format == "tflite":
        info["tflite_input_shape"] = [1, config.tflite_size, config.tflite_size, 3]
        if config.model_type == "arbitrary":
            info["tflite_files"] = [TFLITE_STYLE_FILE, TFLITE_TRANSFER_FILE]
            info["tflite_style_input_shape"] = [1, config.tflite_style_size, config.tflite_style_size, 3]
    return info


def tflite_bytes(concrete_function):
    """The flatbuffer of a fixed-shape concrete function, builtin TFLite ops only."""
    # Freeze the weights into constants first: converted with the module as
    # trackable object, the flatbuffer keeps resource variables that the
    # interpreter never initialises (READ_VARIABLE fails, XNNPACK gives NaN).
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete_function)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    # Builtins only, so the stock interpreter runs it (no Flex delegate on the device).
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def save(module, config, description=None):
    """Write ``module`` as the next version under ``config.export_dir``; returns its path.

    First removes the temporary version folders of exports killed there before (not those
    of an export still running: see :func:`nst_tf.fileio.remove_leftovers`).
    """
    fileio.remove_leftovers(config.export_dir)
    version = next_version(config.export_dir)
    path = os.path.join(config.export_dir, str(version))
    with fileio.atomic_directory(path) as tmp:
        if config.format == "tflite":
            for file_name, function in module.tflite_functions(config).items():
                with open(os.path.join(tmp, file_name), "wb") as f:
                    f.write(tflite_bytes(function))
        else:
            tf.saved_model.save(module, tmp, signatures=module.signatures())
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(_info(config, module, description), f, indent=2, default=str)
    return path


def export(config, model=None):
    """Build the model ``config`` describes and write it as a new version; returns its path.

    ``model`` (a Keras model) replaces loading ``config.checkpoint`` or
    building the feature extractor, for library use and tests.
    """
    fileio.check_writable(config.export_dir, "--export_dir", folder=True)
    description = None
    if model is None and config.model_type in _TRAINED_METHODS:
        model, description = load_model(config)
    module = build_module(config, model)
    try:
        return save(module, config, description)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            # Another export took the same version number between listing and rename.
            raise NSTError(f"{config.export_dir}: a version appeared during the export; export again") from None
        raise
