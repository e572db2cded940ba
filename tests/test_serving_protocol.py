"""nst_tf.serving.protocol without a server: URLs, predict requests and responses, limits,
status and metadata JSON, error messages."""

import base64
import io
import json
from http import HTTPStatus

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from nst_tf.serving import protocol
from nst_tf.serving.protocol import RequestError

BYTES_SPECS = {"image_bytes": tf.TensorSpec([None], tf.string)}
MULTI_SPECS = {"image_bytes": tf.TensorSpec([None], tf.string), "style_weights": tf.TensorSpec([2], tf.float32)}
TENSOR_SPECS = {"images": tf.TensorSpec([None, None, None, 3], tf.float32)}


def encoded(size, format="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(buffer, format=format)
    return buffer.getvalue()


def b64(data):
    return {"b64": base64.b64encode(data).decode("ascii")}


def refused(status, match, fn, *args):
    with pytest.raises(RequestError, match=match) as info:
        fn(*args)
    assert info.value.status == status
    return info.value


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/v1/models/tiny", ("tiny", None, "")),
        ("/v1/models/tiny/", ("tiny", None, "")),
        ("/v1/models/tiny/versions/3/metadata", ("tiny", 3, "/metadata")),
        ("/v1/models/tiny:predict?debug=1", ("tiny", None, ":predict")),
        ("/v1/models/tiny/versions/12:regress", ("tiny", 12, ":regress")),
    ],
)
def test_model_paths(path, expected):
    assert protocol.parse_model_path("GET", path) == expected


def test_bad_model_paths():
    refused(
        HTTPStatus.NOT_FOUND,
        r"^Malformed request: POST /v2/whatever$",
        protocol.parse_model_path,
        "POST",
        "/v2/whatever?x=1",
    )
    refused(
        HTTPStatus.NOT_FOUND,
        "labels are not supported",
        protocol.parse_model_path,
        "GET",
        "/v1/models/tiny/labels/stable",
    )
    refused(
        HTTPStatus.BAD_REQUEST,
        "version must be an integer, not 'latest'",
        protocol.parse_model_path,
        "GET",
        "/v1/models/tiny/versions/latest",
    )
    assert protocol.parse_version(None) is None and protocol.parse_version("7") == 7


def test_signature_name():
    available = {"serving_default": None, "stylize_tensor": None}
    assert protocol.signature_name({}, available) == "serving_default"
    assert protocol.signature_name({"signature_name": ""}, available) == "serving_default"
    assert protocol.signature_name({"signature_name": "stylize_tensor"}, available) == "stylize_tensor"
    refused(HTTPStatus.BAD_REQUEST, "must be a JSON object", protocol.signature_name, [1, 2], available)
    error = refused(
        HTTPStatus.BAD_REQUEST,
        "not found in signature def",
        protocol.signature_name,
        {"signature_name": "nope"},
        available,
    )
    assert "['serving_default', 'stylize_tensor']" in str(error)


def test_row_and_columnar_requests_give_the_same_arrays():
    png = encoded((4, 3))
    forms = [
        {"instances": [b64(png), b64(png)]},
        {"instances": [{"image_bytes": b64(png)}, {"image_bytes": b64(png)}]},
        {"inputs": [b64(png), b64(png)]},
        {"inputs": {"image_bytes": [b64(png), b64(png)]}},
    ]
    for body in forms:
        arrays, row_format = protocol.parse_predict_request(body, BYTES_SPECS)
        assert row_format == ("instances" in body)
        assert list(arrays) == ["image_bytes"] and arrays["image_bytes"].tolist() == [png, png]


def test_requests_with_several_inputs_and_numbers():
    png = encoded((4, 3))
    arrays, row_format = protocol.parse_predict_request(
        {"inputs": {"image_bytes": [b64(png)], "style_weights": [1, 0.5]}}, MULTI_SPECS
    )
    assert not row_format and arrays["style_weights"].dtype == np.float32
    np.testing.assert_array_equal(arrays["style_weights"], [1.0, 0.5])
    pixels = np.arange(2 * 3 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 3)
    arrays, row_format = protocol.parse_predict_request({"instances": pixels.tolist()}, TENSOR_SPECS)
    assert row_format
    np.testing.assert_array_equal(arrays["images"], pixels)


@pytest.mark.parametrize(
    "body, specs, match",
    [
        ({"instances": [], "inputs": []}, BYTES_SPECS, "exactly one of 'instances'"),
        ({"signature_name": "serving_default"}, BYTES_SPECS, "exactly one of 'instances'"),
        ({"instances": []}, BYTES_SPECS, "non-empty list"),
        ({"instances": [{"b64": "not*base64!"}]}, BYTES_SPECS, "invalid base64"),
        ({"instances": [{"b64": "AA==", "x": 1}]}, BYTES_SPECS, 'must be {"b64"'),
        ({"instances": [3.5]}, BYTES_SPECS, "expected a string or"),
        ({"inputs": {"images": "abc"}}, TENSOR_SPECS, "expected numbers, got str"),
        ({"inputs": [[[[True, 0.0, 0.0]]]]}, TENSOR_SPECS, "expected numbers, got bool"),
        ({"inputs": [[1.0, 2.0]]}, TENSOR_SPECS, r"shape \[1, 2\] does not match"),
        ({"inputs": [[[[1.0, 2.0, 3.0]], [[1.0, 2.0]]]]}, TENSOR_SPECS, "cannot convert to float32"),
        ({"inputs": {"image_bytes": [], "style_weights": [1, 0], "x": 1}}, MULTI_SPECS, r"unexpected \['x'\]"),
        ({"inputs": {"image_bytes": []}}, MULTI_SPECS, r"missing \['style_weights'\]"),
        ({"instances": ["x"]}, MULTI_SPECS, "each instance must be an object"),
        ({"instances": [{"image_bytes": b64(b"x")}]}, MULTI_SPECS, "instance 0: inputs must be"),
        (
            {"instances": [{"image_bytes": b64(b"x"), "style_weights": [1.0, 0.0]}]},
            MULTI_SPECS,
            r"style_weights': shape \[1, 2\] does not match",
        ),
        ({"inputs": [[b64(b"x")], [b64(b"y"), b64(b"z")]]}, BYTES_SPECS, "ragged nested lists"),
    ],
)
def test_bad_predict_requests(body, specs, match):
    refused(HTTPStatus.BAD_REQUEST, match, protocol.parse_predict_request, body, specs)


def test_limits():
    small, big = encoded((8, 8)), encoded((20, 10))
    protocol.check_limits({"image_bytes": np.array([small, small], dtype=object)}, 2, 64)
    refused(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "batch of 3 exceeds 2",
        protocol.check_limits,
        {"image_bytes": np.array([small] * 3, dtype=object)},
        2,
        64,
    )
    # Pixels come from the header: 20 x 10 = 200.
    refused(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        r"input 'image_bytes'\[1\]: 200 pixels exceeds 199",
        protocol.check_limits,
        {"image_bytes": np.array([small, big], dtype=object)},
        2,
        199,
    )
    protocol.check_limits({"image_bytes": np.array([big], dtype=object)}, 2, 200)
    refused(
        HTTPStatus.BAD_REQUEST,
        r"\[0\]: not an image",
        protocol.check_limits,
        {"image_bytes": np.array([b"hello"], dtype=object)},
        2,
        64,
    )
    refused(
        HTTPStatus.BAD_REQUEST,
        "TIFF images are not supported",
        protocol.check_limits,
        {"image_bytes": np.array([encoded((8, 8), "TIFF")], dtype=object)},
        2,
        64,
    )
    refused(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "65 pixels per image exceeds 64",
        protocol.check_limits,
        {"images": np.zeros((1, 5, 13, 3), np.float32)},
        2,
        64,
    )


def test_responses_in_both_formats():
    pngs = np.array([b"\x89PNG one", b"\x89PNG two"], dtype=object)
    row = protocol.format_predict_response({"image_bytes": pngs}, row_format=True)
    assert row == {"predictions": [b64(b"\x89PNG one"), b64(b"\x89PNG two")]}
    column = protocol.format_predict_response({"image_bytes": pngs}, row_format=False)
    assert column == {"outputs": [b64(b"\x89PNG one"), b64(b"\x89PNG two")]}
    values = {"images": np.float32([[0.5], [1.5]]), "names": np.array([b"a", b"b"], dtype=object)}
    assert protocol.format_predict_response(values, row_format=True) == {
        "predictions": [{"images": [0.5], "names": "a"}, {"images": [1.5], "names": "b"}]
    }
    assert protocol.format_predict_response(values, row_format=False) == {
        "outputs": {"images": [[0.5], [1.5]], "names": ["a", "b"]}
    }
    json.dumps(protocol.format_predict_response(values, row_format=True))  # plain JSON types only
    refused(
        HTTPStatus.BAD_REQUEST,
        "do not share a batch dimension",
        protocol.format_predict_response,
        {"images": np.zeros((2, 3)), "style_weights": np.zeros(3)},
        True,
    )


def test_status_and_metadata_json():
    states = {1: ("AVAILABLE", "OK", ""), 3: ("END", "UNKNOWN", "bad graph")}
    assert protocol.format_model_status("tiny", None, states) == {
        "model_version_status": [
            {"version": "3", "state": "END", "status": {"error_code": "UNKNOWN", "error_message": "bad graph"}},
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        ]
    }
    refused(HTTPStatus.NOT_FOUND, r"model Latest\(tiny\)$", protocol.format_model_status, "tiny", None, {})
    refused(HTTPStatus.NOT_FOUND, r"model Specific\(tiny, 4\)$", protocol.format_model_status, "tiny", 4, {})
    meta = protocol.format_metadata("tiny", 2, {"serving_default": {"method_name": "x"}})
    assert meta == {
        "model_spec": {"name": "tiny", "signature_name": "", "version": "2"},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {"method_name": "x"}}}},
    }


def test_tf_error_message_keeps_the_line_that_says_what_was_wrong():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def needs_two(x):
        tf.debugging.assert_greater_equal(tf.size(x), 2, message="needs two values")
        return x

    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        needs_two(tf.constant([1.0]))
    message = protocol.tf_error_message(info.value)
    assert "needs two values" in message
    assert not message.startswith(("Graph execution error", "Detected at node", "[["))
    assert protocol.tf_error_message(ValueError("")) == "ValueError"


def test_parse_json_bounds_the_nesting():
    assert protocol.parse_json(b'{"a": [[1], {"b": [2]}]}', 4) == {"a": [[1], {"b": [2]}]}
    refused(HTTPStatus.BAD_REQUEST, "nested more than 3 levels", protocol.parse_json, b'{"a": [[1], {"b": [2]}]}', 3)
    assert protocol.parse_json(b"[]", 1) == [] and protocol.parse_json(b"7", 1) == 7
    # Deeper than the parser's own recursion limit: the same 400, no RecursionError.
    refused(HTTPStatus.BAD_REQUEST, "nested more than 32", protocol.parse_json, b"[" * 100_000 + b"]" * 100_000, 32)
    refused(HTTPStatus.BAD_REQUEST, "^JSON parse error", protocol.parse_json, b'{"a": ', 32)
    refused(HTTPStatus.BAD_REQUEST, "^JSON parse error", protocol.parse_json, b"\xff\xfe\xfd", 32)
