"""nst-export --model_type=arbitrary: the four signatures against the Keras model, the run dir it
exports from, the TFLite pair, and bad input. Random VGG weights, tiny images."""

import json
import os
import pathlib
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from feedforward_helpers import write_training_dir
from test_export import ENV
from test_export import TFLITE_TOL
from test_export import VENV_BIN
from test_export import _conv_dtypes
from test_export import run_in_tensorflow_only_process

from nst_tf import export
from nst_tf import images
from nst_tf.errors import NSTError
from nst_tf.models import ArbitraryStyleNet
from nst_tf.models import StyleVector

# Largest |SavedModel - Keras| on the [0, 1] pixel scale, and relative on style vectors.
ROUND_TRIP_TOL = 1e-5


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return ArbitraryStyleNet("vgg16", weights=None, width=0.125)


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(11)
    pixels = {
        "content": rng.integers(0, 256, (2, 20, 28, 3)),
        "style_a": rng.integers(0, 256, (1, 36, 32, 3)) * np.array([1.0, 0.5, 0.2]),
        "style_b": rng.integers(0, 256, (1, 24, 40, 3)) * np.array([0.2, 0.6, 1.0]),
    }
    # Whole levels, so a PNG holds exactly the floats the tensor signatures get.
    pictures = {name: np.round(value).astype(np.float32) for name, value in pixels.items()}
    pictures["png"] = {
        name: [tf.io.encode_png(image.astype(np.uint8)).numpy() for image in pictures[name]]
        for name in ("content", "style_a", "style_b")
    }
    return pictures


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model):
    """A training output dir as nst-train-arbitrary writes it: method "arbitrary", the whole
    ArbitraryStyleNet (encoder included) as checkpoint attribute "model"."""
    return write_training_dir(tmp_path_factory.mktemp("arbitrary_run"), "arbitrary", {"model": model})


@pytest.fixture(scope="module")
def exported(tmp_path_factory, run_dir):
    """Exported by the command, from the training dir."""
    out = tmp_path_factory.mktemp("models") / "adain"
    cmd = [str(VENV_BIN / "nst-export"), "--model_type=arbitrary", f"--checkpoint={run_dir}", f"--export_dir={out}"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"exported arbitrary model to {out / '1'}"
    return str(out / "1")


def stylized(model, content, vectors, alpha):
    """The Keras model's output in [0, 255] for content in [0, 255] and a StyleVector."""
    return model.stylize(content / 255.0, vectors, np.reshape(np.float32(alpha), [-1, 1, 1, 1])).numpy() * 255.0


def test_the_info_records_the_signatures_and_the_encoder(exported, model):
    info = json.loads((pathlib.Path(exported) / export.INFO_FILE).read_text())
    assert info["model_type"] == "arbitrary"
    assert info["signatures"] == ["serving_default", "style_vector", "stylize_tensor", "stylize_with_vector"]
    # The checkpoint brought back the encoder: vectors cached against this id stay valid.
    assert info["encoder_id"] == model.encoder_id and info["style_vector_size"] == 1024


def test_every_signature_round_trips_in_a_tensorflow_only_process(exported, model, pictures, tmp_path):
    content, style_a, style_b, png = pictures["content"], pictures["style_a"], pictures["style_b"], pictures["png"]
    vector_a, vector_b = (model.style_vector(s / 255.0) for s in (style_a, style_b))
    both = StyleVector.concat([vector_a, vector_b])
    cases = {
        "stylize_tensor": (
            {"content": content, "style": style_a, "alpha": np.float32([0.7])},
            {"images": stylized(model, content, vector_a, 0.7)},
        ),
        "style_vector": (
            {"style_bytes": np.array(png["style_a"] + png["style_b"])},
            {"style_vector": both.to_tensor().numpy()},
        ),
        # One painting for both photos, one alpha each.
        "serving_default": (
            {
                "content_bytes": np.array(png["content"]),
                "style_bytes": np.array(png["style_b"]),
                "alpha": np.float32([0.3, 1.0]),
            },
            {"image_bytes": stylized(model, content, vector_b, [0.3, 1.0])},
        ),
        # One vector per photo, one alpha for both.
        "stylize_with_vector": (
            {
                "content_bytes": np.array(png["content"]),
                "style_vector": both.to_tensor().numpy(),
                "alpha": np.float32([0.5]),
            },
            {"image_bytes": stylized(model, content, both, 0.5)},
        ),
    }
    # Encoded images in as fixed-width byte strings ("S"), which np.load reads without pickle.
    outputs = run_in_tensorflow_only_process(
        tmp_path, {name: (exported, name, inputs) for name, (inputs, _) in cases.items()}
    )
    for name, (_, want) in cases.items():
        got = outputs[name]
        assert set(got) == set(want), name
        key, value = next(iter(want.items()))
        if key == "image_bytes":  # PNGs: the Keras output rounded to 8 bits
            decoded = np.stack([tf.io.decode_png(data).numpy() for data in got[key]]).astype(np.float32)
            assert decoded.shape == value.shape
            assert np.abs(decoded - np.round(np.clip(value, 0, 255))).max() <= 1, name
        elif key == "images":
            np.testing.assert_allclose(got[key] / 255.0, value / 255.0, rtol=0, atol=ROUND_TRIP_TOL, err_msg=name)
        else:
            np.testing.assert_allclose(got[key], value, rtol=ROUND_TRIP_TOL, atol=ROUND_TRIP_TOL, err_msg=name)
    # The style matters: another painting gives another picture.
    assert np.abs(cases["stylize_with_vector"][1]["image_bytes"][0] - stylized(model, content, vector_a, 0.5)[1]).max()


def test_a_cached_vector_gives_the_image_of_the_painting(exported, pictures):
    signatures = tf.saved_model.load(exported).signatures
    png = pictures["png"]
    [vector] = signatures["style_vector"](style_bytes=tf.constant(png["style_a"]))["style_vector"].numpy()
    alpha = tf.constant([0.8])
    content_bytes = tf.constant(png["content"])
    from_painting = signatures["serving_default"](
        content_bytes=content_bytes, style_bytes=tf.constant(png["style_a"]), alpha=alpha
    )["image_bytes"].numpy()
    from_vector = signatures["stylize_with_vector"](
        content_bytes=content_bytes, style_vector=tf.constant(vector[None]), alpha=alpha
    )["image_bytes"].numpy()
    assert list(from_painting) == list(from_vector)


def test_max_side_caps_photos_and_paintings(tmp_path, model, pictures):
    path = export.export(export.ExportConfig("arbitrary", str(tmp_path / "capped"), max_side=16), model=model)
    signatures = tf.saved_model.load(path).signatures
    content, style = pictures["content"], pictures["style_a"]
    out = signatures["stylize_tensor"](content=content, style=style, alpha=tf.constant([1.0]))["images"]
    assert out.shape == (2, 11, 16, 3)
    [vector] = signatures["style_vector"](style_bytes=tf.constant(pictures["png"]["style_a"]))["style_vector"].numpy()
    # Shrunk as nst-stylize shrinks a painting (images.resize_image).
    small = images.resize_image(np.asarray(style[0], np.float32) / 255.0, (16, 14))[None]
    np.testing.assert_allclose(vector, model.style_vector(small).to_tensor()[0], rtol=1e-4, atol=1e-4)


def test_bad_input_is_refused_with_the_inputs_name(tmp_path, model, pictures):
    path = export.export(export.ExportConfig("arbitrary", str(tmp_path / "m")), model=model)
    signatures = tf.saved_model.load(path).signatures
    png = pictures["png"]
    good = {
        "content_bytes": tf.constant(png["content"]),
        "style_bytes": tf.constant(png["style_a"]),
        "alpha": tf.constant([1.0]),
    }
    vector = signatures["style_vector"](style_bytes=tf.constant(png["style_a"] * 3))["style_vector"]
    bad = {
        "alpha": ("serving_default", {**good, "alpha": tf.constant([1.5])}, "alpha: must be in"),
        "alphas": ("serving_default", {**good, "alpha": tf.constant([0.1, 0.2, 0.3])}, "alpha: needs 1 row"),
        "corrupt": ("serving_default", {**good, "style_bytes": tf.constant([png["style_a"][0][:40]])}, None),
        "vectors": (
            "stylize_with_vector",
            {"content_bytes": good["content_bytes"], "style_vector": vector, "alpha": good["alpha"]},
            "style_vector: needs 1 row or one per content image",
        ),
        "tiny content": (
            "stylize_tensor",
            {"content": tf.zeros([1, 4, 4, 3]), "style": pictures["style_a"], "alpha": good["alpha"]},
            None,
        ),
    }
    for signature, inputs, message in bad.values():
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            signatures[signature](**inputs)
    with pytest.raises(TypeError):  # a missing input: the signature's own check
        signatures["serving_default"](content_bytes=good["content_bytes"], alpha=good["alpha"])


# TF's own interpreter warns that it moves to ai_edge_litert; it runs the same flatbuffer.
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_tflite_pair_is_builtin_and_matches_the_saved_model(tmp_path, model, pictures):
    config = export.ExportConfig(
        "arbitrary", str(tmp_path / "tflite"), format="tflite", tflite_size=32, tflite_style_size=48
    )
    path = pathlib.Path(export.export(config, model=model))
    assert sorted(os.listdir(path)) == ["assets.extra", export.TFLITE_STYLE_FILE, export.TFLITE_TRANSFER_FILE]
    info = json.loads((path / export.INFO_FILE).read_text())
    assert info["tflite_style_input_shape"] == [1, 48, 48, 3] and info["tflite_input_shape"] == [1, 32, 32, 3]

    def run(file_name, feed):
        interpreter = tf.lite.Interpreter(model_path=str(path / file_name))
        interpreter.allocate_tensors()
        ops = {op["op_name"] for op in interpreter._get_ops_details()}  # pylint: disable=protected-access
        assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], feed[detail["name"]])
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    rng = np.random.default_rng(4)
    style = np.round(rng.random((1, 48, 48, 3)) * 255).astype(np.float32)
    content = np.round(rng.random((1, 32, 32, 3)) * 255).astype(np.float32)
    vector = run(export.TFLITE_STYLE_FILE, {"style": style})
    transferred = run(
        export.TFLITE_TRANSFER_FILE, {"content": content, "style_vector": vector, "alpha": np.float32([0.6])}
    )

    module = export.ArbitraryModule(model)
    png = tf.io.encode_png(style[0].astype(np.uint8))
    want_vector = module.style_vector(tf.stack([png]))["style_vector"].numpy()
    np.testing.assert_allclose(vector, want_vector, rtol=1e-4, atol=1e-4)
    want = module.stylize_tensor(tf.constant(content), tf.constant(style), tf.constant([0.6]))["images"].numpy()
    assert transferred.shape == want.shape == (1, 32, 32, 3)
    assert np.abs(transferred - want).max() <= TFLITE_TOL
    assert np.abs(want - module.stylize_tensor(content, style, tf.constant([0.0]))["images"]).max() > 1.0

    with pytest.raises(NSTError, match="--tflite_style_size: this model needs at least 16, not 8"):
        export.export(
            export.ExportConfig("arbitrary", str(tmp_path / "small"), format="tflite", tflite_style_size=8),
            model=model,
        )


def test_load_model_checks_the_run_and_restores_precision(tmp_path, run_dir, model, pictures):
    restored, description = export.load_model(
        export.ExportConfig("arbitrary", str(tmp_path / "x"), checkpoint=run_dir, precision="bfloat16")
    )
    assert description["method"] == "arbitrary" and restored.encoder_id == model.encoder_id
    path = export.export(
        export.ExportConfig("arbitrary", str(tmp_path / "bf16"), checkpoint=run_dir, precision="bfloat16")
    )
    fn = tf.saved_model.load(path).signatures["stylize_tensor"]
    assert _conv_dtypes(fn) == {"bfloat16"}
    out = fn(content=pictures["content"], style=pictures["style_a"], alpha=tf.constant([1.0]))["images"]
    assert out.dtype == tf.float32
    with pytest.raises(NSTError, match="trained with method 'arbitrary', not 'fast'"):
        export.export(export.ExportConfig("fast", str(tmp_path / "y"), checkpoint=run_dir))
