"""nst-serve and the REST client with an arbitrary-style (AdaIN) export: every signature, both
request formats, cached style vectors, bad input."""

import base64
import pathlib

import keras
import numpy as np
import pytest
from test_serving import b64
from test_serving import decode_png
from test_serving import png_bytes

from nst_tf import export
from nst_tf.models import ArbitraryStyleNet
from nst_tf.models import StyleVector
from nst_tf.serving.client import RestClient
from nst_tf.serving.client import ServingError
from nst_tf.serving.client import blend_style_vectors
from nst_tf.serving.server import ModelServer
from nst_tf.serving.server import ServerConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
MAX_PIXELS = 64 * 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(6)
    model = ArbitraryStyleNet("vgg16", weights=None, width=0.125)
    export.export(export.ExportConfig("arbitrary", str(base / "adain")), model=model)
    server = ModelServer(ServerConfig(str(base), port=0, max_image_pixels=MAX_PIXELS, max_batch_size=4)).start()
    rng = np.random.default_rng(2)
    pixels = {
        "photo": (rng.random((24, 32, 3)) * 255).astype(np.uint8),
        "painting_a": (rng.random((40, 36, 3)) * [255, 120, 40]).astype(np.uint8),
        "painting_b": (rng.random((32, 48, 3)) * [40, 140, 255]).astype(np.uint8),
    }
    yield {
        "server": server,
        "client": RestClient(server.url, "adain"),
        "model": model,
        "pixels": pixels,
        "png": {name: png_bytes(value) for name, value in pixels.items()},
    }
    server.shutdown()


def vector_of(setup, name):
    return setup["model"].style_vector(setup["pixels"][name][None].astype(np.float32) / 255.0)


def expected(setup, style, alpha=1.0):
    """The model's picture of the photo in the style of a StyleVector, as 8-bit pixels."""
    photo = setup["pixels"]["photo"][None].astype(np.float32) / 255.0
    return np.round(np.clip(setup["model"].stylize(photo, style, alpha).numpy()[0] * 255.0, 0, 255))


def test_metadata_lists_the_four_signatures(setup):
    signatures = setup["client"].metadata()["metadata"]["signature_def"]["signature_def"]
    # TF Serving's metadata also lists the SavedModel's __saved_model_init_op.
    names = {name for name in signatures if not name.startswith("__")}
    assert names == {"serving_default", "stylize_tensor", "style_vector", "stylize_with_vector"}
    assert set(signatures["serving_default"]["inputs"]) == {"content_bytes", "style_bytes", "alpha"}
    assert set(signatures["stylize_with_vector"]["inputs"]) == {"content_bytes", "style_vector", "alpha"}
    dims = signatures["style_vector"]["outputs"]["style_vector"]["tensor_shape"]["dim"]
    assert [d["size"] for d in dims] == ["-1", "1024"]


def test_serving_default_in_both_formats(setup):
    client, png = setup["client"], setup["png"]
    want = expected(setup, vector_of(setup, "painting_a"), 0.75)
    [out] = client.stylize_with_style([png["photo"]], [png["painting_a"]], alpha=0.75)
    assert np.abs(decode_png(out) - want).max() <= 1
    # Row format, as TF Serving's docs write it: one object per (photo, painting, alpha).
    rows = [
        {"content_bytes": b64(png["photo"]), "style_bytes": b64(png[name]), "alpha": 0.75}
        for name in ("painting_a", "painting_b")
    ]
    answer = client.predict(instances=rows)["predictions"]
    assert len(answer) == 2 and base64.b64decode(answer[0]["b64"]) == out
    assert np.abs(decode_png(base64.b64decode(answer[1]["b64"])) - want).max() > 2  # the other painting


def test_a_cached_and_blended_vector(setup):
    client, png = setup["client"], setup["png"]
    vector_a, vector_b = client.style_vector([png["painting_a"], png["painting_b"]])
    np.testing.assert_allclose(vector_a, vector_of(setup, "painting_a").to_tensor()[0], rtol=1e-4, atol=1e-4)
    # The vector gives the picture the painting gives.
    [cached] = client.stylize_with_vector([png["photo"]], vector_a, alpha=0.5)
    assert cached == client.stylize_with_style([png["photo"]], [png["painting_a"]], alpha=0.5)[0]
    # Mixed on the client as StyleVector.blend mixes them.
    mixed = blend_style_vectors([vector_a, vector_b], [1.0, 3.0])
    both = StyleVector.concat([vector_of(setup, "painting_a"), vector_of(setup, "painting_b")])
    [out] = client.stylize_with_vector([png["photo"]], mixed)
    assert np.abs(decode_png(out) - expected(setup, both.blend([1.0, 3.0]))).max() <= 1
    assert blend_style_vectors([vector_a, vector_b], [1.0, 0.0]) == pytest.approx(vector_a)
    # One vector per photo, one alpha per photo.
    outs = client.stylize_with_vector([png["photo"]] * 2, [vector_a, vector_b], alpha=[0.5, 1.0])
    assert (
        outs[0] == cached and np.abs(decode_png(outs[1]) - expected(setup, vector_of(setup, "painting_b"))).max() <= 1
    )


def test_stylize_tensor(setup):
    pixels = setup["pixels"]
    photo = pixels["photo"][None].astype(np.float32)
    out = setup["client"].stylize_tensor_with_style(photo, pixels["painting_b"][None].astype(np.float32), alpha=0.9)
    want = setup["model"].stylize(photo / 255.0, vector_of(setup, "painting_b"), 0.9).numpy() * 255.0
    np.testing.assert_allclose(out, want, atol=1e-3)


@pytest.mark.parametrize(
    "case",
    ["missing style", "corrupt painting", "alpha above 1", "short vector", "vector rows", "painting too large"],
)
def test_bad_input_is_a_400_or_413_and_the_server_carries_on(setup, case):
    client, png = setup["client"], setup["png"]
    vector = [0.5] * 1024
    big = png_bytes(np.zeros((80, 80, 3), np.uint8))
    photo = [b64(png["photo"])]
    requests = {
        "missing style": ({"inputs": {"content_bytes": photo, "alpha": [1.0]}}, None, 400, "missing ['style_bytes']"),
        "corrupt painting": (
            {"inputs": {"content_bytes": photo, "style_bytes": [b64(png["painting_a"][:60])], "alpha": [1.0]}},
            None,
            400,
            "PNG",
        ),
        "alpha above 1": (
            {"inputs": {"content_bytes": photo, "style_bytes": [b64(png["painting_a"])], "alpha": [1.5]}},
            None,
            400,
            "alpha: must be in [0, 1]",
        ),
        "short vector": (
            {"inputs": {"content_bytes": photo, "style_vector": [vector[:10]], "alpha": [1.0]}},
            "stylize_with_vector",
            400,
            "does not match",
        ),
        "vector rows": (
            {"inputs": {"content_bytes": photo, "style_vector": [vector] * 2, "alpha": [1.0]}},
            "stylize_with_vector",
            400,
            "style_vector: needs 1 row or one per content image",
        ),
        "painting too large": (
            {"inputs": {"content_bytes": photo, "style_bytes": [b64(big)], "alpha": [1.0]}},
            None,
            413,
            "exceeds",
        ),
    }
    payload, signature, status, message = requests[case]
    with pytest.raises(ServingError) as info:
        client.predict(**payload, signature_name=signature)
    assert info.value.status == status and message in info.value.message, info.value.message
    [out] = client.stylize_with_style([png["photo"]], [png["painting_a"]])
    assert np.abs(decode_png(out) - expected(setup, vector_of(setup, "painting_a"))).max() <= 1


def test_tf_serving_config_lists_the_arbitrary_model():
    text_format = pytest.importorskip("google.protobuf.text_format")
    config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    config = text_format.Parse((REPO / "export" / "models.config").read_text(), config_pb2.ModelServerConfig())
    names = {c.name: c.base_path for c in config.model_config_list.config}
    assert names["adain"] == "/models/adain"
    assert "--model_type=arbitrary" in (REPO / "export" / "models.config").read_text()
    assert "adain" in (REPO / "export" / "docker-compose.yml").read_text()
