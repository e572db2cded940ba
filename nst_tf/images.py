"""Image I/O, resizing and colour utilities.

Images in the library are float32 RGB arrays in [0, 1] of shape (H, W, 3).
Everything here works on NumPy arrays (tensors are accepted wherever an
array is read) and runs once per image, so NumPy and Pillow are enough.
The one exception is :func:`decode_image_tensor`, the same decoding in
TensorFlow ops for graphs that run without Python (exported SavedModels,
``tf.data`` pipelines).

Loading is defensive: bad input raises :class:`ImageError` with a one-line
message ``"<path>: <reason>"`` that the command-line tools print as is.
"""

import importlib.resources
import io
import os
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
from PIL import ImageOps
from PIL import UnidentifiedImageError

from nst_tf.errors import NSTError
from nst_tf.fileio import atomic_write_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
SAVE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
# The bundled samples, package data of nst_tf (the demo's and the web app's defaults); their
# sources and licences are in samples/README.md.
SAMPLES = importlib.resources.files("nst_tf") / "samples"
SAMPLE_CONTENT = SAMPLES / "rocket.jpg"
SAMPLE_STYLE = SAMPLES / "starry_night.jpg"
MIN_SIDE = 32  # the smallest input the feature extractors accept (five 2x poolings)
# 8192 x 8192: far above any style-transfer input, below Pillow's own warning
# threshold (PIL.Image.MAX_IMAGE_PIXELS, about 89 Mpx) so our message wins.
MAX_PIXELS = 8192 * 8192

# --preserve_color, in Gatys and in --model runs alike: each mode acts either on the
# style images before stylizing (recolor_style) or on the output after (preserve_color).
_PRESERVE_COLOR_MEANINGS = {
    "none": "keep the stylized colours",
    "luminance": "after stylizing, keep the output's luminance and give it the photo's colour",
    "histogram": "before stylizing, recolour the style images to the photo's colour mean and "
    "covariance, as Gatys et al. do (Gatys only: a trained net's style is fixed)",
    "output_histogram": "after stylizing, match the output's colour mean and covariance to the photo's",
}
PRESERVE_COLOR_MODES = tuple(_PRESERVE_COLOR_MEANINGS)
PRESERVE_COLOR_HELP = (
    "Keep the content photo's colours. "
    + "; ".join(f"{mode}: {meaning}" for mode, meaning in _PRESERVE_COLOR_MEANINGS.items())
    + "."
)

COLOR_SPACES = ("yiq", "yuv")
HISTOGRAM_MODES = ("cholesky", "sym")

# NTSC (FCC) YIQ and ITU-R BT.601 YUV; rows give Y, then the two chroma axes.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])
_RGB_TO_YUV = np.array([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])
# Exact inverses (not the rounded published ones) so round trips are lossless.
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
_YUV_TO_RGB = np.linalg.inv(_RGB_TO_YUV)


class ImageError(NSTError):
    """An image file or buffer that cannot be used; the message is ``"<name>: <reason>"``."""


class ImageTooLargeError(ImageError):
    """An image with more pixels than allowed, found from its header before any decoding.

    ``pixels`` is its width x height, or None when Pillow's own guard refused it first.
    """

    def __init__(self, message, pixels=None):
        super().__init__(message)
        self.pixels = pixels


# --------------------------------------------------------------------------- loading


class _EOFProbe(io.BytesIO):
    """A buffer that records when a decoder asks for bytes past the end.

    Pillow only raises on truncated files while the process-wide
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` is False, and other libraries
    (tensorflow_datasets among them) set it to True on import. A complete
    file never makes the decoder read at end-of-file, so this detects
    truncation whatever that flag says, without touching it.
    """

    read_past_end = False

    def read(self, size=-1):
        data = super().read(size)
        if size != 0 and not data:
            self.read_past_end = True
        return data


def load_image(path, max_side=None, min_side=MIN_SIDE, max_pixels=MAX_PIXELS):
    """Load an image file as float32 RGB in [0, 1], shape (H, W, 3).

    Reads anything Pillow reads (JPEG, PNG, WebP, BMP, TIFF; the first frame
    of a GIF), applies the EXIF orientation, and converts grayscale, palette,
    alpha (composited on white), CMYK and 16-bit images to RGB.

    Args:
      path: the image file.
      max_side: if given, resize (antialiased, down or up) so that the longest
        side equals ``max_side`` exactly, keeping the aspect ratio.
      min_side: the shorter side, before and after resizing, must be at least
        this (32 px: the feature extractors' minimum).
      max_pixels: refuse images with more pixels than this, checked from the
        header before anything is decoded (decompression-bomb guard). Pillow's
        own limit, ``PIL.Image.MAX_IMAGE_PIXELS``, still applies on top.

    Raises:
      ImageError: missing file, directory, empty, truncated or corrupt file,
        not an image, too small, or too many pixels.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, not an image file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_image_bytes(data, name=path, max_side=max_side, min_side=min_side, max_pixels=max_pixels)


def decode_image_bytes(data, name="<bytes>", max_side=None, min_side=MIN_SIDE, max_pixels=MAX_PIXELS):
    """Decode an encoded image (file contents) exactly as :func:`load_image` does.

    ``name`` labels the data in error messages (a file name, an upload id).
    """
    image, buffer = _open_header(data, name, max_pixels)
    width, height = image.size
    _check_min_side(name, width, height, min_side)
    buffer.read_past_end = False
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{name}: truncated or corrupt image ({_one_line(e)})") from None
    if buffer.read_past_end:
        raise ImageError(f"{name}: truncated image (data ends before the picture does)")
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as e:  # a broken EXIF block must not crash the tool
        raise ImageError(f"{name}: corrupt EXIF orientation ({_one_line(e)})") from None
    array = _to_rgb_float(image)
    if max_side is not None:
        array = resize_longest_side(array, max_side)
        _check_min_side(name, array.shape[1], array.shape[0], min_side, after_resize=max_side)
    return array


def read_image_header(data, name="<bytes>", max_pixels=MAX_PIXELS):
    """Open an encoded image without decoding its pixels: the decompression-bomb guard alone.

    Returns the lazily opened Pillow image (``format`` and ``size`` known, no pixel read;
    close it, or use it in a ``with``), for callers that bound a request by its images'
    sizes before a decoder sees them (:mod:`nst_tf.serving.protocol`).

    Raises:
      ImageTooLargeError: ``width * height`` is above ``max_pixels`` (or above Pillow's
        own limit, ``PIL.Image.MAX_IMAGE_PIXELS``).
      ImageError: empty data, not an image, or a corrupt header.
    """
    return _open_header(data, name, max_pixels)[0]


def _open_header(data, name, max_pixels):
    """``Image.open`` with our errors and the pixel count checked: (image, its _EOFProbe buffer)."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    buffer = _EOFProbe(bytes(data))
    with warnings.catch_warnings():
        # Pillow warns (above MAX_IMAGE_PIXELS) before it raises (above twice
        # that); both mean the same thing to us.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(buffer)
        except UnidentifiedImageError:
            reason = "not an image file (or a format Pillow cannot read)"
            raise ImageError(f"{name}: {reason}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            reason = f"too many pixels, refusing to decode ({_one_line(e)})"
            raise ImageTooLargeError(f"{name}: {reason}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{name}: corrupt image header ({_one_line(e)})") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(
            f"{name}: image is {width}x{height} = {width * height} pixels, more than the "
            f"limit of {max_pixels}; refusing to decode (decompression-bomb guard)",
            pixels=width * height,
        )
    return image, buffer


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _check_min_side(name, width, height, min_side, after_resize=None):
    if min(width, height) < min_side:
        how = f" after resizing to max_side={after_resize}" if after_resize else ""
        raise ImageError(f"{name}: image is {width}x{height}{how}, smaller than the minimum side of {min_side} px")


def _to_rgb_float(image):
    """Convert a loaded Pillow image of any mode to float32 RGB in [0, 1]."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit PNG/TIFF; mode "I" holds them too in some Pillow versions.
        gray = np.asarray(image, dtype=np.float64) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)
    if image.mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=-1)
    has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        # Composite on white: transparent areas read as paper, not as black.
        return rgba[..., :3] * alpha + (1.0 - alpha)
    # Pillow inverts Adobe CMYK JPEGs itself; "1", "L", "P", YCbCr, LAB, HSV too.
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


# --------------------------------------------------------------------------- in-graph decoding

_EXIF_HEADER = tuple(b"Exif\0\0")
_ORIENTATION_TAG = 0x0112
# The Exif segment comes before the image data, after at most a few other APPn segments of
# at most 64 KiB each: the first 256 KiB hold it, and only they are read.
_EXIF_SEARCH_BYTES = 4 * 65538
# Application segments looked at for the Exif one. Exif puts it first, or after JFIF's
# APP0 (CIPA DC-008, sec. 4.5.4); 16 leaves room for writers that put others first.
_EXIF_SEGMENT_STEPS = 16


def decode_image_tensor(encoded, max_pixels=MAX_PIXELS):
    """One encoded JPEG/PNG/GIF/BMP/WebP string tensor -> ``[H, W, 3]`` float32 in [0, 1].

    The graph-op counterpart of :func:`decode_image_bytes`, for graphs Pillow cannot run in:
    RGB, the first frame of an animated GIF, JPEGs through libjpeg's accurate integer IDCT
    as Pillow decodes them (``tf.io.decode_image``'s default, the fast IDCT, differs by up
    to 8 levels), and the EXIF orientation applied (:func:`exif_orientation`), so a phone's
    portrait comes out upright as :func:`load_image` gives it. Unlike Pillow it reads
    16-bit PNGs at 8 bits and composites no alpha. Decoding errors raise as
    ``tf.io.decode_image``'s do.

    The decompression-bomb guard of :func:`load_image` holds here too: an image whose
    header (:func:`encoded_image_size`) declares more than ``max_pixels`` pixels raises
    ``InvalidArgumentError`` before anything is decoded (a ``tf.data`` pipeline's
    ``ignore_errors`` then skips it like any unreadable file).
    """
    height, width = tf.unstack(encoded_image_size(encoded))
    check = tf.debugging.Assert(
        height * width <= max_pixels,
        ["image is", width, "x", height, f"pixels, more than the limit of {max_pixels}; refusing to decode"],
    )
    with tf.control_dependencies([check] if check is not None else []):  # eager: Assert has raised already
        encoded = tf.identity(encoded)
    pixels = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
    )
    image = tf.image.convert_image_dtype(pixels, tf.float32)
    return apply_exif_orientation(image, exif_orientation(encoded))


def encoded_image_size(encoded):
    """``[height, width]`` (int64) that an encoded image's header declares, in graph ops, decoding nothing.

    JPEG: the frame header, through ``tf.image.extract_jpeg_shape``. The others from their
    fixed headers, in the first 30 bytes:

    * PNG: the IHDR chunk first, width and height big-endian uint32 at bytes 16 and 20;
    * GIF: the logical screen, width and height little-endian uint16 at bytes 6 and 8;
    * BMP: width and height little-endian int32 at bytes 18 and 22 (height < 0: top-down);
    * WebP: ``RIFF <size> WEBP`` and a first chunk at byte 12 (WebP container spec):
      ``VP8X``, canvas width - 1 and height - 1 as 24-bit little-endian at 24 and 27;
      ``VP8L``, signature 0x2F at 20, then width - 1 and height - 1 as two 14-bit fields
      of the little-endian word at 21; ``VP8 ``, a key frame's 14-bit width and height
      (little-endian, RFC 6386 sec. 9.1) at 26 and 28.

    Anything else gives ``[0, 0]``: the decoder refuses it anyway.
    """
    b = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 0, 30), tf.uint8), tf.int64)
    b = tf.concat([b, tf.zeros([30 - tf.size(b)], tf.int64)], 0)

    def little(start, count):
        return tf.reduce_sum(b[start : start + count] * 256 ** np.arange(count, dtype=np.int64))

    def big(start, count):
        return tf.reduce_sum(b[start : start + count] * 256 ** np.arange(count - 1, -1, -1, dtype=np.int64))

    def starts_with(prefix, at=0):
        return tf.reduce_all(b[at : at + len(prefix)] == list(prefix))

    def signed(value):  # an int32 field read as unsigned
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    vp8l = little(21, 4)
    webp = starts_with(b"RIFF") & starts_with(b"WEBP", 8)
    candidates = [
        (starts_with(b"\x89PNG"), big(20, 4), big(16, 4)),
        (starts_with(b"GIF8"), little(8, 2), little(6, 2)),
        (starts_with(b"BM"), signed(little(22, 4)), signed(little(18, 4))),
        (webp & starts_with(b"VP8X", 12), little(27, 3) + 1, little(24, 3) + 1),
        (webp & starts_with(b"VP8L", 12), vp8l // 16384 % 16384 + 1, vp8l % 16384 + 1),
        (webp & starts_with(b"VP8 ", 12), little(28, 2) % 16384, little(26, 2) % 16384),
    ]
    size = tf.zeros([2], tf.int64)
    for matches, height, width in candidates:
        size = tf.where(matches, tf.stack([height, width]), size)
    return tf.cond(
        tf.io.is_jpeg(encoded), lambda: tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64), lambda: size
    )


def exif_orientation(encoded):
    """The EXIF Orientation (1-8) of an encoded image, in graph ops (no Python at run time).

    1, the stored orientation, for anything but a JPEG with a readable Orientation tag:
    other formats, no Exif, or an Exif block that is truncated or malformed.

    A JPEG (ITU-T T.81, annex B) is ``FF D8`` then segments ``FF <marker> <length:
    2 bytes, big-endian, counting itself> <payload>``, the application (APPn) segments
    first. Exif (CIPA DC-008, sec. 4.5) is an APP1 segment (``FF E1``) whose payload starts
    with ``Exif\\0\\0``, followed by a TIFF header: the byte order (``II`` little-endian,
    ``MM`` big-endian), 42, and the offset of IFD0 from the header. IFD0 is an entry count
    and 12-byte entries ``(tag, type, count, value)``; Orientation is tag 0x0112, a SHORT
    held in the first two value bytes.

    A ``tf.while_loop`` walks the application segments; in a ``tf.data`` map the cost is
    per op, so every read of a segment header or of all of IFD0's entries is one gather,
    and a failed check masks the result rather than branching.
    """
    data = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 0, _EXIF_SEARCH_BYTES), tf.uint8), tf.int32)
    size = tf.size(data)
    # Reads past the end land on zero padding, which the bounds checks then refuse.
    padded = tf.concat([data, tf.zeros([16], tf.int32)], 0)

    def read(start, count):
        """Bytes ``start .. start + count - 1``; for a vector of starts, one row each."""
        index = tf.expand_dims(start, -1) + tf.range(count)
        return tf.gather(padded, tf.clip_by_value(index, 0, size + 15))

    def walk(searching, pos, tiff, end):
        window = read(pos, 10)
        ff, marker, length_high, length_low = tf.unstack(window[:4])
        fill = (ff == 0xFF) & (marker == 0xFF)  # markers may be preceded by FF fill bytes
        segment_end = pos + 2 + length_high * 256 + length_low
        broken = (ff != 0xFF) | (~fill & ((segment_end < pos + 4) | (segment_end > size)))
        # Neither an APPn nor a comment: the tables and the image data begin.
        past_metadata = ~fill & ((marker < 0xE0) | ((marker > 0xEF) & (marker != 0xFE)))
        found = (
            ~broken & ~fill & (marker == 0xE1) & (segment_end >= pos + 10) & tf.reduce_all(window[4:] == _EXIF_HEADER)
        )
        return (
            ~(broken | past_metadata | found),
            tf.where(fill, pos + 1, segment_end),
            tf.where(found, pos + 10, tiff),
            tf.where(found, segment_end, end),
        )

    _, _, tiff, end = tf.while_loop(
        lambda searching, *_: searching,
        walk,
        (tf.io.is_jpeg(encoded), tf.constant(2), tf.constant(-1), tf.constant(-1)),
        maximum_iterations=_EXIF_SEGMENT_STEPS,
    )

    header = read(tiff, 8)
    little = tf.reduce_all(header[:2] == 0x49)  # "II"; "MM" is big-endian
    big = tf.reduce_all(header[:2] == 0x4D)

    def uint(window):
        """The unsigned integers of the last axis's bytes, in the TIFF's byte order."""
        powers = 256 ** np.arange(window.shape[-1], dtype=np.int32)
        return tf.reduce_sum(window * tf.where(little, powers, powers[::-1]), -1)

    # An offset past 2**31 wraps negative in int32 and fails the range check.
    ifd = tiff + uint(header[4:])
    valid = (tiff >= 0) & (little | big) & (uint(header[2:4]) == 42) & (ifd >= tiff + 8) & (ifd + 2 <= end)
    # The entries that fit in the segment; a count running past it is read as far as it goes.
    fitting = tf.clip_by_value(tf.minimum(uint(read(ifd, 2)), (end - ifd - 2) // 12), 0, 65535)
    entries = tf.where(valid, fitting, 0)
    index = tf.range(entries)
    fields = read(ifd + 2 + 12 * index, 12)
    types = uint(fields[:, 2:4])
    values = tf.where(types == 4, uint(fields[:, 8:12]), uint(fields[:, 8:10]))  # SHORT, or LONG from odd writers
    hits = (uint(fields[:, 0:2]) == _ORIENTATION_TAG) & ((types == 3) | (types == 4))
    # The last such entry wins, as in Pillow's tag dictionary; none gives 0.
    last = tf.reduce_max(tf.where(hits, index, -1))
    value = tf.reduce_sum(tf.where(index == last, values, 0))
    return tf.where((value >= 1) & (value <= 8), value, 1)


def apply_exif_orientation(image, orientation):
    """``[H, W, C]`` stored pixels -> upright, for EXIF ``orientation`` 1-8 (others: unchanged).

    Each orientation is undone as Pillow's ``ImageOps.exif_transpose`` does (2 mirror,
    3 rotate 180°, 4 flip, 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 90°
    counter-clockwise), written as the dihedral group's normal form: transpose for 5-8,
    then reverse the rows for 3, 4, 7, 8 and the columns for 2, 3, 6, 7. The permutation
    and the reversed axes are tensors, so the graph has no branch (a ``tf.switch_case`` over
    the eight cases doubled the decoding time of a 256 px JPEG in a ``tf.data`` map).
    """
    orientation = tf.cast(orientation, tf.int32)
    known = (orientation >= 2) & (orientation <= 8)
    transpose = known & (orientation >= 5)
    flip_rows = known & ((orientation == 3) | (orientation == 4) | (orientation == 7) | (orientation == 8))
    flip_columns = known & ((orientation == 2) | (orientation == 3) | (orientation == 6) | (orientation == 7))
    upright = tf.transpose(image, tf.where(transpose, [1, 0, 2], [0, 1, 2]))
    upright = tf.reverse(upright, tf.boolean_mask([0, 1], tf.stack([flip_rows, flip_columns])))
    # The permutation is a tensor, so the static shape is lost: H and W may swap, C stays.
    return tf.ensure_shape(upright, [None, None, image.shape[-1]])


# --------------------------------------------------------------------------- saving


def to_uint8(img, name="<image>"):
    """A float image in [0, 1] (HxWxC or 1xHxWxC, C = 1 or 3) as the HxWx3 (or HxW) uint8
    pixels :func:`encode_image` writes: clipped and rounded to 8 bits."""
    array = np.asarray(img, dtype=np.float32)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ImageError(f"{name}: expected an HxWx3 (or 1xHxWx3) image, got shape {np.shape(img)}")
    if not np.all(np.isfinite(array)):
        raise ImageError(f"{name}: image contains NaN or infinite values")
    pixels = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def encode_image(img, format="png", quality=95, name="<image>"):
    """Encode a float image in [0, 1] as PNG or JPEG bytes.

    Accepts HxWxC or 1xHxWxC (C = 1 or 3), NumPy or tensor; values are clipped
    to [0, 1] and rounded to 8 bits.
    """
    fmt = format.lower()
    if fmt not in ("png", "jpeg", "jpg"):
        raise ImageError(f"{name}: cannot encode as {format!r}; use png or jpeg")
    image = Image.fromarray(to_uint8(img, name))
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG")
    else:
        # No chroma subsampling: stylized images are all fine colour detail.
        image.save(out, format="JPEG", quality=quality, subsampling=0)
    return out.getvalue()


def save_image(path, img, quality=95):
    """Save a float image in [0, 1] atomically as PNG or JPEG, chosen by the extension.

    The file appears complete or not at all (temporary file and rename); parent
    folders are created.
    """
    path = os.fspath(path)
    fmt = SAVE_FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ImageError(f"{path}: unsupported output extension; use .png, .jpg or .jpeg")
    atomic_write_bytes(path, encode_image(img, format=fmt, quality=quality, name=path))


# --------------------------------------------------------------------------- geometry


def resize_image(img, size):
    """Resize an HxWxC float image to ``size = (height, width)``.

    Bicubic through Pillow, whose filters widen when downscaling, so shrinking
    is antialiased. Works channel by channel in float32 (no 8-bit rounding);
    the result is clipped to [0, 1] to remove the filter's overshoot.
    """
    array = np.asarray(img, dtype=np.float32)
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"resize_image: size must be positive, got {size}")
    if array.shape[:2] == (height, width):
        return array.copy()
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(array[..., c])).resize((width, height), Image.Resampling.BICUBIC)
        )
        for c in range(array.shape[-1])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def longest_side_shape(shape, side):
    """The (height, width) with the same aspect ratio as ``shape`` and longest side ``side``."""
    height, width = int(shape[0]), int(shape[1])
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_longest_side(img, side):
    """Resize (down or up) so that the longest side equals ``side``, keeping the aspect ratio."""
    side = int(side)
    if side < 1:
        raise ValueError(f"resize_longest_side: side must be positive, got {side}")
    array = np.asarray(img, dtype=np.float32)
    return resize_image(array, longest_side_shape(array.shape, side))


def letterbox(img, side, background=1.0):
    """``img`` shrunk or enlarged to fit a ``side`` x ``side`` square, centred on ``background``."""
    array = resize_longest_side(img, side)
    box = np.full((side, side, array.shape[-1]), background, np.float32)
    top, left = (side - array.shape[0]) // 2, (side - array.shape[1]) // 2
    box[top : top + array.shape[0], left : left + array.shape[1]] = array
    return box


def contact_sheet(grid, row_labels, col_labels, pad=4, background=255):
    """Lay out ``grid[r][c]`` (equal-size [H, W, 3] images) with labels; return [H, W, 3].

    Row labels (which may span several lines) go in a left margin, column
    labels in a top margin, drawn with Pillow's default font. Columns widen to
    fit their label.
    """
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text):
        if not text:
            return 0, 0
        left, top, right, bottom = measure.multiline_textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    cell_h, cell_w = grid[0][0].shape[:2]
    label_h = max(text_size(t)[1] for t in list(col_labels) + ["Ag"])
    top = label_h + 2 * pad if any(col_labels) else pad
    left = max(text_size(t)[0] for t in row_labels) + 2 * pad if any(row_labels) else pad
    col_w = [max(cell_w, text_size(t)[0]) + pad for t in col_labels]
    width = left + sum(col_w)
    height = top + len(row_labels) * (cell_h + pad)
    sheet = Image.new("RGB", (width, height), (background,) * 3)
    draw = ImageDraw.Draw(sheet)
    x = left
    for c, label in enumerate(col_labels):
        draw.text((x + (col_w[c] - pad - text_size(label)[0]) // 2, pad), label, fill=(0, 0, 0), font=font)
        x += col_w[c]
    for r, label in enumerate(row_labels):
        y = top + r * (cell_h + pad)
        draw.multiline_text((pad, y + max(0, cell_h - text_size(label)[1]) // 2), label, fill=(0, 0, 0), font=font)
        x = left
        for c in range(len(col_labels)):
            tile = np.clip(np.asarray(grid[r][c]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            sheet.paste(Image.fromarray(tile), (x + (col_w[c] - pad - cell_w) // 2, y))
            x += col_w[c]
    return np.asarray(sheet, dtype=np.float32) / 255.0


def center_crop_to_aspect(img, aspect):
    """Largest centred crop of ``img`` whose width / height equals ``aspect``."""
    array = np.asarray(img)
    height, width = array.shape[:2]
    if width / height > aspect:
        new_width = max(1, round(height * aspect))
        left = (width - new_width) // 2
        return array[:, left : left + new_width]
    new_height = max(1, round(width / aspect))
    top = (height - new_height) // 2
    return array[top : top + new_height]


def scale_style_image(style, content_shape, style_scale=1.0, crop=False):
    """Size a style image relative to the content image.

    The style image is resized so that its longest side is
    ``style_scale * max(content_height, content_width)``: the style's features
    (brush strokes) appear at that relative scale in the result, larger when
    ``style_scale`` grows. With ``crop=True`` it is first centre-cropped to the
    content's aspect ratio, which magnifies the style's motifs relative to the
    picture (the cropped-style experiment of the HKU COMP 3359 report).

    Args:
      style: HxWx3 float image.
      content_shape: the content image's shape, (H, W) or (H, W, C).
      style_scale: positive factor.
      crop: centre-crop to the content aspect ratio before resizing.
    """
    if style_scale <= 0:
        raise ValueError(f"style_scale must be positive, got {style_scale}")
    content_height, content_width = int(content_shape[0]), int(content_shape[1])
    if crop:
        style = center_crop_to_aspect(style, content_width / content_height)
    side = max(1, round(style_scale * max(content_height, content_width)))
    return resize_longest_side(style, side)


def list_images(folder, recursive=True, exclude=None):
    """Sorted paths of the image files in ``folder`` (by extension, case-insensitive).

    Hidden files (a leading dot: editor back-ups, our own temporary files while
    an output is being written) are skipped, and so is the subfolder ``exclude``
    (compared resolved): a command's output folder inside its input folder, whose
    earlier outputs are not inputs.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ImageError(f"{folder}: no such directory")
    excluded = os.path.realpath(exclude) if exclude else None
    paths = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = (
            [d for d in dirs if not d.startswith(".") and os.path.realpath(os.path.join(root, d)) != excluded]
            if recursive
            else []
        )
        paths.extend(
            os.path.join(root, name)
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    return sorted(paths)


# --------------------------------------------------------------------------- colour


def _apply_matrix(img, matrix):
    array = np.asarray(img, dtype=np.float32)
    return (array @ matrix.T.astype(np.float32)).astype(np.float32)


def rgb_to_yiq(img):
    """RGB -> YIQ (NTSC): Y = 0.299 R + 0.587 G + 0.114 B, I and Q carry the colour."""
    return _apply_matrix(img, _RGB_TO_YIQ)


def yiq_to_rgb(img):
    """YIQ -> RGB, the exact inverse of :func:`rgb_to_yiq` (no clipping)."""
    return _apply_matrix(img, _YIQ_TO_RGB)


def rgb_to_yuv(img):
    """RGB -> YUV (BT.601): Y as in YIQ, U = 0.436 (B - Y) / 0.886, V = 0.615 (R - Y) / 0.701."""
    return _apply_matrix(img, _RGB_TO_YUV)


def yuv_to_rgb(img):
    """YUV -> RGB, the exact inverse of :func:`rgb_to_yuv` (no clipping)."""
    return _apply_matrix(img, _YUV_TO_RGB)


_COLOR_SPACES = {"yiq": (rgb_to_yiq, yiq_to_rgb), "yuv": (rgb_to_yuv, yuv_to_rgb)}


def transfer_luminance(stylized, content, space="yiq"):
    """Keep the stylized image's luminance and the content image's colour.

    Gatys et al. 2016, "Controlling perceptual factors in neural style
    transfer", sec. 5: with x = (Y, C1, C2) in a luminance/chroma space,

        out = to_rgb(Y_stylized, C1_content, C2_content),

    the post-hoc form of luminance-only transfer. ``content`` is resized to the
    stylized image's size if they differ; the result is clipped to [0, 1].
    """
    if space not in _COLOR_SPACES:
        raise ValueError(f"space must be one of {COLOR_SPACES}, got {space!r}")
    to_space, from_space = _COLOR_SPACES[space]
    stylized = np.asarray(stylized, dtype=np.float32)
    content = np.asarray(content, dtype=np.float32)
    if content.shape[:2] != stylized.shape[:2]:
        content = resize_image(content, stylized.shape[:2])
    mixed = to_space(content)
    mixed[..., 0] = to_space(stylized)[..., 0]
    return np.clip(from_space(mixed), 0.0, 1.0)


def _sqrtm(cov, inverse=False):
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues = np.maximum(eigenvalues, 1e-12)
    power = -0.5 if inverse else 0.5
    return (eigenvectors * eigenvalues**power) @ eigenvectors.T


def match_color_histogram(source, reference, mode="cholesky", eps=1e-5, clip=True):
    """Affine colour transfer giving ``source`` the mean and covariance of ``reference``.

    Gatys et al. 2016, sec. 5.1. With pixels x of the source (mean mu_s,
    covariance Sigma_s) and of the reference (mu_r, Sigma_r), both covariances
    regularised as Sigma + eps I,

        x' = A (x - mu_s) + mu_r,   where A Sigma_s A^T = Sigma_r,

    so x' has mean mu_r and covariance Sigma_r. Two choices of A:

      - ``"cholesky"``: A = L_r L_s^-1 with Sigma = L L^T (Cholesky factors);
      - ``"sym"`` (image analogies): A = Sigma_r^(1/2) Sigma_s^(-1/2), using
        symmetric matrix square roots.

    The paper applies it to the style image with the content image as reference,
    before optimisation. The result is clipped to [0, 1] unless ``clip=False``
    (clipping moves the statistics slightly where colours leave the gamut).
    """
    if mode not in HISTOGRAM_MODES:
        raise ValueError(f"mode must be one of {HISTOGRAM_MODES}, got {mode!r}")
    source = np.asarray(source, dtype=np.float32)
    pixels_s = source.reshape(-1, 3).astype(np.float64)
    pixels_r = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    mean_s, mean_r = pixels_s.mean(axis=0), pixels_r.mean(axis=0)
    cov_s = np.cov(pixels_s, rowvar=False, bias=True) + eps * np.eye(3)
    cov_r = np.cov(pixels_r, rowvar=False, bias=True) + eps * np.eye(3)
    if mode == "cholesky":
        transform = np.linalg.cholesky(cov_r) @ np.linalg.inv(np.linalg.cholesky(cov_s))
    else:
        transform = _sqrtm(cov_r) @ _sqrtm(cov_s, inverse=True)
    matched = (pixels_s - mean_s) @ transform.T + mean_r
    matched = matched.reshape(source.shape).astype(np.float32)
    return np.clip(matched, 0.0, 1.0) if clip else matched


def _check_color_mode(mode):
    if mode not in PRESERVE_COLOR_MODES:
        raise ValueError(f"preserve_color mode must be one of {PRESERVE_COLOR_MODES}, got {mode!r}")


def recolor_style(style, content, mode):
    """The style image as the optimisation should see it under ``--preserve_color=mode``.

    ``"histogram"``: :func:`match_color_histogram` of the style to the content, Gatys et al.'s
    colour preservation ("Controlling Perceptual Factors in Neural Style Transfer", sec. 5.1),
    which makes the optimisation reproduce the painting's strokes in the photo's colours. Every
    other mode leaves the style as it is (they act on the output: :func:`preserve_color`).
    """
    _check_color_mode(mode)
    return match_color_histogram(style, content) if mode == "histogram" else style


def preserve_color(stylized, content, mode="luminance", space="yiq"):
    """Give a stylized image back the content image's colours (post-processing).

    - ``"luminance"``: :func:`transfer_luminance` (stylized luminance, content
      chroma, in ``space``);
    - ``"output_histogram"``: :func:`match_color_histogram` of the stylized image
      to the content image (mean and covariance of the content's colours);
    - ``"none"``, and ``"histogram"``, which acts on the style images before
      stylizing (:func:`recolor_style`): ``stylized`` unchanged.
    """
    _check_color_mode(mode)
    stylized = np.asarray(stylized, dtype=np.float32)
    if mode == "luminance":
        return transfer_luminance(stylized, content, space=space)
    if mode == "output_histogram":
        return match_color_histogram(stylized, content)
    return stylized
