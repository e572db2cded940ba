"""Tests for nst_tf.images: every I/O edge case, resizing, colour utilities."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from PIL import ImageFile
from PIL import ImageOps

from nst_tf import images
from nst_tf.errors import NSTError
from nst_tf.images import ImageError


def _noise_uint8(rng, height, width):
    return (rng.random((height, width, 3)) * 255).astype(np.uint8)


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return str(path)


def _assert_one_line_error(error, path):
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- bad input


def test_image_error_is_an_nst_error():
    assert issubclass(ImageError, NSTError)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.jpg")
    with pytest.raises(ImageError) as error:
        images.load_image(path)
    assert "no such file" in _assert_one_line_error(error, path)


def test_directory(tmp_path):
    path = str(tmp_path / "folder.jpg")
    os.mkdir(path)
    with pytest.raises(ImageError) as error:
        images.load_image(path)
    assert "directory" in _assert_one_line_error(error, path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as error:
        images.load_image(path)
    assert "empty" in _assert_one_line_error(error, str(path))


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    with pytest.raises(ImageError) as error:
        images.load_image(path)
    assert "not an image" in _assert_one_line_error(error, str(path))


def _truncated_jpeg(tmp_path, rng, progressive=False):
    full = io.BytesIO()
    Image.fromarray(_noise_uint8(rng, 96, 96)).save(full, "JPEG", progressive=progressive)
    path = tmp_path / "cut.jpg"
    path.write_bytes(full.getvalue()[: len(full.getvalue()) * 2 // 3])
    return str(path)


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("pillow_allows_truncated", [False, True])
def test_truncated_jpeg_raises(tmp_path, rng, monkeypatch, progressive, pillow_allows_truncated):
    # tensorflow_datasets sets this process-wide flag on import; we must still refuse.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", pillow_allows_truncated)
    path = _truncated_jpeg(tmp_path, rng, progressive)
    with pytest.raises(ImageError) as error:
        images.load_image(path)
    assert "truncated" in _assert_one_line_error(error, path)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF"])
def test_truncated_other_formats_raise_even_if_pillow_allows(tmp_path, rng, monkeypatch, fmt):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    full = io.BytesIO()
    Image.fromarray(_noise_uint8(rng, 64, 64)).save(full, fmt)
    with pytest.raises(ImageError, match="truncated"):
        images.decode_image_bytes(full.getvalue()[: len(full.getvalue()) // 2], name="cut")


def test_too_small(tmp_path):
    path = _save(tmp_path / "tiny.png", Image.new("RGB", (16, 16), "red"))
    with pytest.raises(ImageError) as error:
        images.load_image(path)
    message = _assert_one_line_error(error, path)
    assert "16x16" in message and "32" in message
    assert images.load_image(path, min_side=8).shape == (16, 16, 3)


def test_too_small_after_resizing(tmp_path):
    path = _save(tmp_path / "strip.png", Image.new("RGB", (400, 40), "red"))
    assert images.load_image(path).shape == (40, 400, 3)
    with pytest.raises(ImageError, match="after resizing"):
        images.load_image(path, max_side=100)


def _png_claiming_size(tmp_path, width, height):
    """A real 64x64 PNG whose header says width x height (so decoding it would fail)."""
    buffer = io.BytesIO()
    Image.new("1", (64, 64)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    # IHDR is the first chunk: 8-byte signature, length, type, then width and height.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path = tmp_path / f"bomb_{width}x{height}.png"
    path.write_bytes(bytes(data))
    return str(path)


@pytest.mark.parametrize(
    "width, height",
    [
        (30000, 30000),  # over twice Pillow's limit: Pillow's DecompressionBombError
        (10000, 10000),  # over Pillow's limit: its DecompressionBombWarning
        (9000, 9000),  # under Pillow's limit, over ours
    ],
)
def test_decompression_bomb_refused_from_header(tmp_path, width, height):
    path = _png_claiming_size(tmp_path, width, height)
    with pytest.raises(ImageError) as error:
        images.load_image(path)
    message = _assert_one_line_error(error, path)
    # Refused from the header: decoding the 64x64 payload would report truncation.
    assert "pixels" in message and "truncated" not in message


def test_max_pixels_is_configurable(tmp_path):
    path = _save(tmp_path / "big.png", Image.new("RGB", (200, 100), "blue"))
    with pytest.raises(ImageError, match="decompression-bomb"):
        images.load_image(path, max_pixels=10_000)
    assert images.load_image(path, max_pixels=20_000).shape == (100, 200, 3)


# --------------------------------------------------------------------------- formats and modes


@pytest.mark.parametrize("fmt, ext", [("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif")])
def test_lossless_formats_round_trip(tmp_path, rng, fmt, ext):
    pixels = _noise_uint8(rng, 40, 50)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    path = _save(tmp_path / f"x.{ext}", Image.fromarray(pixels), format=fmt, **kwargs)
    loaded = images.load_image(path)
    assert loaded.dtype == np.float32 and loaded.shape == (40, 50, 3)
    np.testing.assert_allclose(loaded, pixels / 255.0, atol=1e-6)


def test_jpeg_loads_close(tmp_path):
    pixels = np.full((48, 64, 3), (200, 120, 40), np.uint8)
    loaded = images.load_image(_save(tmp_path / "x.jpg", Image.fromarray(pixels), quality=95))
    np.testing.assert_allclose(loaded, pixels / 255.0, atol=3 / 255)


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "blue")]
    path = _save(tmp_path / "anim.gif", frames[0], save_all=True, append_images=frames[1:])
    np.testing.assert_allclose(images.load_image(path)[20, 20], [1, 0, 0], atol=1e-6)


def test_grayscale(tmp_path):
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1))
    loaded = images.load_image(_save(tmp_path / "g.png", Image.fromarray(gray)))
    assert loaded.shape == (40, 64, 3)
    np.testing.assert_allclose(loaded, np.repeat(gray[..., None] / 255.0, 3, axis=-1), atol=1e-6)


def test_sixteen_bit_png_keeps_precision(tmp_path):
    values = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (40, 1))
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    loaded = images.load_image(_save(tmp_path / "deep.png", image))
    np.testing.assert_allclose(loaded[..., 0], values / 65535.0, atol=1e-6)
    assert np.all(loaded[..., 0] == loaded[..., 2])


def test_sixteen_bit_mode_i(tmp_path):
    values = np.full((40, 40), 32768, np.int32)
    loaded = images.load_image(_save(tmp_path / "i.tif", Image.fromarray(values)))
    np.testing.assert_allclose(loaded, 32768 / 65535.0, atol=1e-6)


def test_cmyk_jpeg(tmp_path):
    path = _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (40, 40), (0, 255, 255, 0)))
    np.testing.assert_allclose(images.load_image(path)[20, 20], [1, 0, 0], atol=3 / 255)


def test_palette_gif_with_transparency_composited_on_white(tmp_path):
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 20, 40))  # left half opaque blue, right half transparent index 0
    path = _save(tmp_path / "pal.gif", image, transparency=0)
    loaded = images.load_image(path)
    np.testing.assert_allclose(loaded[20, 5], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(loaded[20, 35], [1, 1, 1], atol=1e-6)


def test_rgba_png_composited_on_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :20, 3] = 255
    rgba[:, 20:, 3] = 0
    rgba[:5, :, 3] = 102  # 40% opaque red over white = (1, 0.6, 0.6)
    loaded = images.load_image(_save(tmp_path / "a.png", Image.fromarray(rgba)))
    np.testing.assert_allclose(loaded[20, 5], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(loaded[20, 35], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(loaded[2, 5], [1, 0.6, 0.6], atol=1e-6)


def test_la_png_composited_on_white(tmp_path):
    image = Image.new("LA", (40, 40), (0, 0))
    image.paste((0, 255), (0, 0, 20, 40))
    loaded = images.load_image(_save(tmp_path / "la.png", image))
    np.testing.assert_allclose(loaded[20, 5], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(loaded[20, 35], [1, 1, 1], atol=1e-6)


def test_exif_orientation_honoured(tmp_path):
    # Stored 64 wide x 32 high, red left, blue right; orientation 6 means
    # "rotate 90 degrees clockwise to display", so it shows 32 wide x 64 high,
    # red on top.
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :32, 0] = 255
    pixels[:, 32:, 2] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    path = _save(tmp_path / "rotated.jpg", image, exif=exif, quality=95)
    loaded = images.load_image(path)
    assert loaded.shape == (64, 32, 3)
    np.testing.assert_allclose(loaded[8, 16], [1, 0, 0], atol=0.05)
    np.testing.assert_allclose(loaded[56, 16], [0, 0, 1], atol=0.05)


# --------------------------------------------------------------------------- in-graph decoding


def _jpeg_with_orientation(orientation, byte_order="<", size=(20, 12)):
    """A noisy, non-square JPEG whose Exif (in ``byte_order``: "<" II, ">" MM) holds two other
    IFD0 tags before the Orientation, so the reader has to walk the entries."""
    image = Image.fromarray(_noise_uint8(np.random.default_rng(orientation), size[1], size[0]))
    exif = Image.Exif()
    exif.endian = byte_order
    exif[0x0100] = size[0]  # ImageWidth
    exif[0x010F] = "nst_tf test"  # Make: an ASCII value stored past the entry
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=90)
    data = buffer.getvalue()
    assert data[:2] == b"\xff\xd8" and (b"II*\0" if byte_order == "<" else b"MM\0*") in data
    return data


def _pillow_upright(data):
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"), np.float32) / 255.0


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_graph_decoding_applies_exif_orientation_as_pillow_does(orientation, byte_order):
    data = _jpeg_with_orientation(orientation, byte_order)
    assert images.exif_orientation(tf.constant(data)).numpy() == orientation
    decoded = images.decode_image_tensor(tf.constant(data)).numpy()
    upright = _pillow_upright(data)
    assert decoded.shape == upright.shape == ((12, 20, 3) if orientation < 5 else (20, 12, 3))
    np.testing.assert_allclose(decoded, upright, atol=1e-6)
    np.testing.assert_allclose(decoded, images.decode_image_bytes(data, min_side=1), atol=1e-6)


def test_graph_decoding_in_a_traced_function():
    decode = tf.function(images.decode_image_tensor, input_signature=[tf.TensorSpec([], tf.string)])
    for orientation in (1, 6, 7):
        data = _jpeg_with_orientation(orientation)
        np.testing.assert_allclose(decode(tf.constant(data)), _pillow_upright(data), atol=1e-6)


def _encoded(image, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make, kwargs",
    [
        (lambda px: Image.fromarray(px), {"format": "PNG"}),
        (lambda px: Image.fromarray(px), {"format": "BMP"}),
        (lambda px: Image.fromarray(px), {"format": "JPEG", "quality": 90}),  # no Exif at all
        (lambda px: Image.fromarray(px).convert("L"), {"format": "JPEG", "quality": 90}),
        (lambda px: Image.fromarray(px).convert("P"), {"format": "GIF"}),
        (lambda px: Image.fromarray(px), {"format": "WEBP", "lossless": True}),
    ],
)
def test_graph_decoding_of_other_images_matches_load_image(rng, make, kwargs):
    data = _encoded(make(_noise_uint8(rng, 12, 20)), **kwargs)
    assert images.exif_orientation(tf.constant(data)).numpy() == 1
    np.testing.assert_allclose(
        images.decode_image_tensor(tf.constant(data)), images.decode_image_bytes(data, min_side=1), atol=1e-6
    )


def _corrupt(data, old, new):
    assert data.count(old) == 1
    return data.replace(old, new)


def test_malformed_exif_leaves_the_image_as_stored():
    data = _jpeg_with_orientation(6, ">")
    stored = images.decode_image_tensor(tf.constant(_jpeg_with_orientation(1, ">"))).shape
    tiff = data.index(b"MM\0*")
    app1 = tiff - 10
    cases = {
        "byte order": _corrupt(data, b"MM\0*", b"XM\0*"),
        "magic": _corrupt(data, b"MM\0*", b"MM\0+"),
        "IFD past the segment": data[: tiff + 4] + b"\x7f\xff\xff\xf0" + data[tiff + 8 :],
        "IFD inside the header": data[: tiff + 4] + b"\0\0\0\x02" + data[tiff + 8 :],
        "segment longer than the file": data[: app1 + 2] + b"\xff\xff" + data[app1 + 4 :],
        "segment length below 2": data[: app1 + 2] + b"\0\x01" + data[app1 + 4 :],
        "not Exif": _corrupt(data, b"Exif\0\0", b"Exit\0\0"),
        "orientation out of range": data[: data.index(b"\x01\x12\0\x03")]
        + b"\x01\x12\0\x03\0\0\0\x01\0\x09"
        + data[data.index(b"\x01\x12\0\x03") + 10 :],
    }
    for name, corrupt in cases.items():
        assert images.exif_orientation(tf.constant(corrupt)).numpy() == 1, name
    for name in ("byte order", "magic", "IFD past the segment", "not Exif", "orientation out of range"):
        assert images.decode_image_tensor(tf.constant(cases[name])).shape == stored, name
    for junk in (b"", b"\xff\xd8", b"\xff\xd8\xff\xe1\x00\x10Exif\0\0MM", b"hello, not an image"):
        assert images.exif_orientation(tf.constant(junk)).numpy() == 1
    # An entry count larger than the segment reads the entries that fit.
    count = tiff + 8
    assert images.exif_orientation(tf.constant(data[:count] + b"\xff\xff" + data[count + 2 :])).numpy() == 6


@pytest.mark.parametrize(
    "size, side, expected",
    [((300, 200), 150, (100, 150)), ((200, 300), 60, (60, 40)), ((50, 40), 100, (80, 100))],
)
def test_load_max_side_sets_longest_side(tmp_path, size, side, expected):
    path = _save(tmp_path / "x.png", Image.new("RGB", size, "green"))
    loaded = images.load_image(path, max_side=side)
    assert loaded.shape == (*expected, 3)
    np.testing.assert_allclose(loaded, np.broadcast_to([0, 128 / 255, 0], loaded.shape), atol=1e-5)


def test_decode_image_bytes_names_the_source(rng):
    with pytest.raises(ImageError, match=r"^upload-7: empty"):
        images.decode_image_bytes(b"", name="upload-7")
    with pytest.raises(ImageError, match=r"^<bytes>: not an image"):
        images.decode_image_bytes(b"GIF89a nonsense")
    data = images.encode_image(_noise_uint8(rng, 40, 40) / 255.0)
    assert images.decode_image_bytes(data, max_side=64).shape == (64, 64, 3)


# --------------------------------------------------------------------------- encoding and saving


def test_encode_png_is_lossless_to_8_bits(tiny_image):
    decoded = images.decode_image_bytes(images.encode_image(tiny_image, "png"))
    np.testing.assert_allclose(decoded, np.round(tiny_image * 255) / 255, atol=1e-6)


def test_encode_jpeg(tiny_image):
    data = images.encode_image(tiny_image, "jpeg", quality=95)
    assert data[:2] == b"\xff\xd8"
    assert np.abs(images.decode_image_bytes(data) - tiny_image).mean() < 0.02
    with pytest.raises(ImageError, match="webp"):
        images.encode_image(tiny_image, "webp")


def test_encode_clips_and_rounds():
    img = np.zeros((32, 32, 3), np.float32)
    img[0, 0] = (-0.5, 1.5, 0.6 / 255)
    decoded = Image.open(io.BytesIO(images.encode_image(img)))
    assert decoded.getpixel((0, 0)) == (0, 255, 1)


@pytest.mark.parametrize("ext, magic", [(".png", b"\x89PNG"), (".jpg", b"\xff\xd8"), (".JPEG", b"\xff\xd8")])
def test_save_by_extension_creates_parents(tmp_path, tiny_image, ext, magic):
    path = tmp_path / "a" / "b" / f"out{ext}"
    images.save_image(path, tiny_image[None])  # 1xHxWxC batch accepted
    assert path.read_bytes()[:4].startswith(magic)
    assert images.load_image(path).shape == tiny_image.shape


def test_save_accepts_tf_tensor(tmp_path, tiny_image):
    tf = pytest.importorskip("tensorflow")
    path = tmp_path / "t.png"
    images.save_image(path, tf.constant(tiny_image[None]))
    np.testing.assert_allclose(images.load_image(path), np.round(tiny_image * 255) / 255, atol=1e-6)


def test_save_rejects_unknown_extension(tmp_path, tiny_image):
    path = tmp_path / "out.gif"
    with pytest.raises(ImageError) as error:
        images.save_image(path, tiny_image)
    _assert_one_line_error(error, str(path))
    assert not path.exists()


def test_save_rejects_bad_arrays(tmp_path, tiny_image):
    with pytest.raises(ImageError, match="shape"):
        images.save_image(tmp_path / "x.png", np.zeros((2, 8, 8, 3)))
    bad = tiny_image.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        images.save_image(tmp_path / "x.png", bad)
    assert os.listdir(tmp_path) == []


def test_save_is_atomic(tmp_path, tiny_image, monkeypatch):
    path = tmp_path / "out.png"
    images.save_image(path, tiny_image)
    before = path.read_bytes()
    assert os.listdir(tmp_path) == ["out.png"]

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        images.save_image(path, 1.0 - tiny_image)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]


# --------------------------------------------------------------------------- geometry


def test_resize_image_is_antialiased():
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    small = images.resize_image(np.repeat(checker[..., None], 3, axis=-1), (16, 16))
    assert small.shape == (16, 16, 3) and small.dtype == np.float32
    np.testing.assert_allclose(small[2:-2, 2:-2], 0.5, atol=0.02)


def test_resize_keeps_constant_and_range(rng):
    img = rng.random((30, 40, 3)).astype(np.float32)
    big = images.resize_image(img, (90, 120))
    assert big.min() >= 0 and big.max() <= 1
    flat = np.full((30, 40, 3), 0.25)
    np.testing.assert_allclose(images.resize_image(flat, (7, 11)), 0.25, atol=1e-6)


@pytest.mark.parametrize(
    "shape, side, expected",
    [((474, 712), 256, (170, 256)), ((712, 474), 256, (256, 170)), ((10, 10), 33, (33, 33))],
)
def test_resize_longest_side(shape, side, expected):
    assert images.resize_longest_side(np.zeros((*shape, 3)), side).shape == (*expected, 3)


def test_scale_style_image(rng):
    style = rng.random((100, 200, 3)).astype(np.float32)
    assert images.scale_style_image(style, (60, 80, 3)).shape == (40, 80, 3)
    assert images.scale_style_image(style, (60, 80), style_scale=2.0).shape == (80, 160, 3)
    cropped = images.scale_style_image(style, (80, 60), style_scale=0.5, crop=True)
    assert cropped.shape == (40, 30, 3)
    with pytest.raises(ValueError):
        images.scale_style_image(style, (60, 80), style_scale=0)


def test_center_crop_to_aspect():
    img = np.arange(100 * 200).reshape(100, 200)
    crop = images.center_crop_to_aspect(img, 1.0)
    assert crop.shape == (100, 100)
    assert crop[0, 0] == img[0, 50]
    assert images.center_crop_to_aspect(img, 4.0).shape == (50, 200)


def test_list_images(tmp_path):
    names = ["b.JPG", "a.png", "sub/c.webp", "sub/deep/d.tiff", "notes.txt"]
    hidden = [".hidden.png", ".cache/e.png", "sub/.tmp-x.png"]
    for name in names + hidden:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [os.path.relpath(p, tmp_path) for p in images.list_images(tmp_path)]
    deep = os.path.join("sub", "deep", "d.tiff")
    assert found == ["a.png", "b.JPG", os.path.join("sub", "c.webp"), deep]
    top = images.list_images(tmp_path, recursive=False)
    assert [os.path.basename(p) for p in top] == ["a.png", "b.JPG"]
    with pytest.raises(ImageError, match="no such directory"):
        images.list_images(tmp_path / "missing")


# --------------------------------------------------------------------------- colour


@pytest.mark.parametrize(
    "forward, inverse",
    [(images.rgb_to_yiq, images.yiq_to_rgb), (images.rgb_to_yuv, images.yuv_to_rgb)],
)
def test_colour_space_round_trip(rng, forward, inverse):
    img = rng.random((20, 30, 3)).astype(np.float32)
    np.testing.assert_allclose(inverse(forward(img)), img, atol=1e-5)
    gray = np.full((4, 4, 3), 0.3, np.float32)
    np.testing.assert_allclose(forward(gray), np.broadcast_to([0.3, 0, 0], (4, 4, 3)), atol=1e-4)


@pytest.mark.parametrize("space, forward", [("yiq", images.rgb_to_yiq), ("yuv", images.rgb_to_yuv)])
def test_transfer_luminance_keeps_content_chroma(rng, space, forward):
    stylized = (0.35 + 0.3 * rng.random((24, 32, 3))).astype(np.float32)
    content = (0.4 + 0.2 * rng.random((24, 32, 3))).astype(np.float32)
    out = images.transfer_luminance(stylized, content, space=space)
    assert out.shape == stylized.shape and out.dtype == np.float32
    np.testing.assert_allclose(forward(out)[..., 0], forward(stylized)[..., 0], atol=1e-5)
    np.testing.assert_allclose(forward(out)[..., 1:], forward(content)[..., 1:], atol=1e-5)
    # A content image of another size is resized to the stylized one.
    smaller = content[:12, :16]
    assert images.transfer_luminance(stylized, smaller, space=space).shape == stylized.shape


@pytest.mark.parametrize("mode", ["cholesky", "sym"])
def test_histogram_matching_gives_reference_statistics(rng, mode):
    mixing = np.array([[0.2, 0.05, 0.0], [0.1, 0.15, 0.02], [0.0, 0.05, 0.1]])
    source = (rng.random((40, 50, 3)) @ mixing.T + 0.2).astype(np.float32)
    spread = np.diag([0.1, 0.05, 0.08])
    reference = (rng.normal(size=(30, 60, 3)) @ spread + [0.6, 0.4, 0.3]).astype(np.float32)
    ref = reference.reshape(-1, 3).astype(np.float64)
    # Exact up to the regulariser: tiny eps checks the formula, the default
    # eps (1e-5 against variances of about 1e-3 here) stays within a few percent.
    for eps, rtol in [(1e-10, 1e-4), (1e-5, 0.05)]:
        out = images.match_color_histogram(source, reference, mode=mode, eps=eps, clip=False)
        pixels = out.reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(pixels.mean(axis=0), ref.mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(np.cov(pixels, rowvar=False), np.cov(ref, rowvar=False), rtol=rtol, atol=rtol * 1e-2)
    clipped = images.match_color_histogram(source, reference, mode=mode)
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_histogram_matching_modes_differ_but_both_valid(rng):
    source = rng.random((32, 32, 3)).astype(np.float32) * [0.3, 0.8, 0.5]
    reference = rng.random((32, 32, 3)).astype(np.float32) ** 2
    chol = images.match_color_histogram(source, reference, "cholesky", clip=False)
    sym = images.match_color_histogram(source, reference, "sym", clip=False)
    assert not np.allclose(chol, sym, atol=1e-3)
    with pytest.raises(ValueError):
        images.match_color_histogram(source, reference, "pca")


def test_preserve_color_modes_act_before_or_after_stylizing(rng):
    stylized = rng.random((32, 32, 3)).astype(np.float32)
    style = rng.random((24, 40, 3)).astype(np.float32)
    content = rng.random((32, 32, 3)).astype(np.float32) * 0.5
    # Before stylizing only "histogram" changes the style; after, only the output modes change the output.
    np.testing.assert_allclose(
        images.recolor_style(style, content, "histogram"), images.match_color_histogram(style, content)
    )
    for mode in ("none", "luminance", "output_histogram"):
        np.testing.assert_array_equal(images.recolor_style(style, content, mode), style)
    for mode in ("none", "histogram"):
        np.testing.assert_array_equal(images.preserve_color(stylized, content, mode), stylized)
    np.testing.assert_allclose(
        images.preserve_color(stylized, content, "luminance", space="yuv"),
        images.transfer_luminance(stylized, content, "yuv"),
    )
    np.testing.assert_allclose(
        images.preserve_color(stylized, content, "output_histogram"),
        images.match_color_histogram(stylized, content),
    )
    assert not np.allclose(images.match_color_histogram(stylized, content), stylized, atol=0.05)
    for fn, image in ((images.preserve_color, stylized), (images.recolor_style, style)):
        with pytest.raises(ValueError, match="output_histogram"):
            fn(image, content, "colour")


def test_preserve_color_help_names_every_mode():
    for mode in images.PRESERVE_COLOR_MODES:
        assert f"{mode}: " in images.PRESERVE_COLOR_HELP


# --------------------------------------------------------------------------- real asset


@pytest.mark.integration
def test_load_real_photo(assets):
    img = images.load_image(assets / "images" / "content" / "chicago.jpg", max_side=256)
    assert img.shape == (170, 256, 3) and img.dtype == np.float32
    assert 0.0 <= img.min() < img.max() <= 1.0
    assert 0.05 < img.std() < 0.5


def test_contact_sheet_layout():
    grid = [[np.full((10, 20, 3), v, np.float32) for v in (0.0, 1.0)] for _ in range(3)]
    sheet = images.contact_sheet(grid, ("a", "b", "c"), ("left", "right"))
    assert sheet.dtype == np.float32 and sheet.shape[2] == 3
    assert sheet.shape[0] > 3 * 10 and sheet.shape[1] > 2 * 20
    bare = images.contact_sheet([[grid[0][0]]], ("",), ("",), pad=2)
    assert bare.shape == (10 + 2 + 2, 20 + 2 + 2, 3)


def test_contact_sheet_multiline_row_labels_fit_the_margin():
    grid = [[np.zeros((8, 8, 3), np.float32)]]
    one = images.contact_sheet(grid, ("a",), ("x",))
    three = images.contact_sheet(grid, ("a\nstyle 0.1\nssim 0.5",), ("x",))
    assert three.shape[1] > one.shape[1]  # the margin widens to the longest line
    assert three.shape[0] == one.shape[0]  # the column labels' row does not grow


def test_letterbox_keeps_aspect_and_centres():
    wide = np.zeros((10, 40, 3), np.float32)
    box = images.letterbox(wide, 20, background=1.0)
    assert box.shape == (20, 20, 3)
    # 10x40 shrinks to 5x20, centred at rows 7..11, with bands above and below.
    assert np.all(box[:7] == 1.0) and np.all(box[12:] == 1.0)
    assert np.all(box[7:12] == 0.0)
