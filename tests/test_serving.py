"""nst-serve: TF Serving's REST API on 127.0.0.1, bad requests, hot reload, concurrency."""

import base64
import http.client
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from nst_tf import export
from nst_tf import models
from nst_tf.serving.client import RestClient
from nst_tf.serving.client import ServingError
from nst_tf.serving.server import ModelServer
from nst_tf.serving.server import ServerConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
VENV_BIN = pathlib.Path(sys.executable).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
MAX_REQUEST_BYTES = 256 * 1024
MAX_PIXELS = 64 * 64
SIZE = 32


def png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def b64(data):
    return {"b64": base64.b64encode(data).decode("ascii")}


def tiny_net(seed):
    keras.utils.set_random_seed(seed)
    return models.TransformNet(width=0.125, num_residual_blocks=1)


def expected_png(net, pixels, style_weights=None):
    """What the server should answer: the net's output as 8-bit pixels."""
    x = pixels[None].astype(np.float32) / 255.0
    y = net((x, np.asarray(style_weights, np.float32))) if style_weights is not None else net(x)
    return np.round(np.clip(y.numpy()[0] * 255.0, 0, 255))


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    nets = {"tiny": tiny_net(1), "swap1": tiny_net(2), "swap2": tiny_net(3)}
    keras.utils.set_random_seed(4)
    nets["multi"] = models.MultiStyleNet(2, width=0.125, num_residual_blocks=1)
    export.export(export.ExportConfig("fast", str(base / "tiny")), model=nets["tiny"])
    export.export(export.ExportConfig("fast", str(base / "swap")), model=nets["swap1"])
    export.export(export.ExportConfig("multistyle", str(base / "multi")), model=nets["multi"])
    config = ServerConfig(
        str(base),
        port=0,
        poll_seconds=0.1,
        max_request_bytes=MAX_REQUEST_BYTES,
        max_image_pixels=MAX_PIXELS,
        max_batch_size=8,
    )
    server = ModelServer(config).start()
    pixels = (np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    yield {"server": server, "base": base, "nets": nets, "pixels": pixels, "png": png_bytes(pixels)}
    server.shutdown()


def raw(server, method, path, body=None, headers=None):
    """One request with exactly these bytes; returns (status, parsed JSON body)."""
    conn = http.client.HTTPConnection(*server.address, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def post(server, path, payload):
    return raw(server, "POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def assert_tiny_answers(setup):
    client = RestClient(setup["server"].url, "tiny")
    [out] = client.stylize([setup["png"]])
    assert np.abs(decode_png(out) - expected_png(setup["nets"]["tiny"], setup["pixels"])).max() <= 1


def test_binds_loopback_by_default():
    assert ServerConfig().host == "127.0.0.1"


def test_status_and_metadata(setup):
    client = RestClient(setup["server"].url, "tiny")
    assert client.status() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    meta = client.metadata()
    assert meta["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert signatures["stylize_tensor"]["outputs"]["images"]["tensor_shape"]["dim"][3]["size"] == "3"
    pinned = RestClient(setup["server"].url, "tiny", version=1).status()
    assert pinned["model_version_status"][0]["version"] == "1"


def test_predict_instances_row_format(setup):
    status, body = post(
        setup["server"], "/v1/models/tiny:predict", {"instances": [b64(setup["png"]), b64(setup["png"])]}
    )
    assert status == 200 and len(body["predictions"]) == 2
    want = expected_png(setup["nets"]["tiny"], setup["pixels"])
    for prediction in body["predictions"]:
        assert np.abs(decode_png(base64.b64decode(prediction["b64"])) - want).max() <= 1
    # Named single input in each row, and the float signature row by row.
    status, named = post(
        setup["server"], "/v1/models/tiny:predict", {"instances": [{"image_bytes": b64(setup["png"])}]}
    )
    assert status == 200 and named["predictions"] == body["predictions"][:1]
    x = setup["pixels"].astype(np.float32)
    status, rows = post(
        setup["server"],
        "/v1/models/tiny:predict",
        {"signature_name": "stylize_tensor", "instances": [x.tolist(), x[::-1].tolist()]},
    )
    assert status == 200 and np.asarray(rows["predictions"]).shape == (2, SIZE, SIZE, 3)
    net_out = setup["nets"]["tiny"](x[None] / 255.0).numpy()[0] * 255.0
    np.testing.assert_allclose(rows["predictions"][0], net_out, atol=1e-3)


def test_predict_inputs_columnar_format(setup):
    x = setup["pixels"][:20, :28].astype(np.float32)
    status, body = post(
        setup["server"],
        "/v1/models/tiny:predict",
        {"signature_name": "stylize_tensor", "inputs": {"images": [x.tolist()]}},
    )
    assert status == 200
    net_out = setup["nets"]["tiny"](x[None] / 255.0).numpy() * 255.0
    np.testing.assert_allclose(body["outputs"], net_out, atol=1e-3)
    # Multi-style: style_weights [N] beside a batch of images needs the columnar format.
    weights = [0.25, 0.75]
    outs = RestClient(setup["server"].url, "multi").stylize([setup["png"]] * 2, style_weights=weights)
    want = expected_png(setup["nets"]["multi"], setup["pixels"], weights)
    assert len(outs) == 2 and all(np.abs(decode_png(o) - want).max() <= 1 for o in outs)
    tensor_out = RestClient(setup["server"].url, "multi").stylize_tensor(x[None], style_weights=weights)
    want = setup["nets"]["multi"]((x[None] / 255.0, np.float32(weights))).numpy() * 255.0
    np.testing.assert_allclose(tensor_out, want, atol=1e-3)


def test_version_selection_and_hot_reload(setup):
    server, nets = setup["server"], setup["nets"]
    old, new = (expected_png(nets[k], setup["pixels"]) for k in ("swap1", "swap2"))
    assert np.abs(old - new).max() > 2  # the two versions are distinguishable
    latest = RestClient(server.url, "swap")
    assert np.abs(decode_png(latest.stylize([setup["png"]])[0]) - old).max() <= 1
    export.export(export.ExportConfig("fast", str(setup["base"] / "swap")), model=nets["swap2"])
    assert wait_for(lambda: len(latest.status()["model_version_status"]) == 2), "version 2 never loaded"
    assert np.abs(decode_png(latest.stylize([setup["png"]])[0]) - new).max() <= 1
    first = RestClient(server.url, "swap", version=1)
    assert np.abs(decode_png(first.stylize([setup["png"]])[0]) - old).max() <= 1
    with pytest.raises(ServingError) as info:
        RestClient(server.url, "swap", version=3).stylize([setup["png"]])
    assert info.value.status == 404


def _bad_cases(png):
    big = (np.random.default_rng(1).random((80, 80, 3)) * 255).astype(np.uint8)
    ok = {"instances": [b64(png)]}
    return {
        "bad json": ("/v1/models/tiny:predict", b'{"instances": [', 400),
        "not an object": ("/v1/models/tiny:predict", b"[1, 2]", 400),
        "bad base64": ("/v1/models/tiny:predict", {"instances": [{"b64": "not*base64!"}]}, 400),
        "non-image": ("/v1/models/tiny:predict", {"instances": [b64(b"hello, not an image")]}, 400),
        "truncated png": ("/v1/models/tiny:predict", {"instances": [b64(png[: len(png) // 2])]}, 400),
        "oversized payload": ("/v1/models/tiny:predict", b" " * (MAX_REQUEST_BYTES + 1), 413),
        "too many pixels": ("/v1/models/tiny:predict", {"instances": [b64(png_bytes(big))]}, 413),
        "batch too large": ("/v1/models/tiny:predict", {"instances": [b64(png)] * 9}, 413),
        "unknown model": ("/v1/models/nope:predict", ok, 404),
        "unknown version": ("/v1/models/tiny/versions/9:predict", ok, 404),
        "bad version": ("/v1/models/tiny/versions/latest:predict", ok, 400),
        "unknown path": ("/v2/whatever", ok, 404),
        "unknown signature": ("/v1/models/tiny:predict", {**ok, "signature_name": "nope"}, 400),
        "both formats": ("/v1/models/tiny:predict", {**ok, "inputs": [b64(png)]}, 400),
        "neither format": ("/v1/models/tiny:predict", {"signature_name": "serving_default"}, 400),
        "number for bytes": ("/v1/models/tiny:predict", {"instances": [3.5]}, 400),
        "string for floats": (
            "/v1/models/tiny:predict",
            {"signature_name": "stylize_tensor", "inputs": {"images": "abc"}},
            400,
        ),
        "wrong shape": ("/v1/models/tiny:predict", {"signature_name": "stylize_tensor", "inputs": [[1.0, 2.0]]}, 400),
        "image too small for the net": (
            "/v1/models/tiny:predict",
            {"signature_name": "stylize_tensor", "inputs": [[[[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]]]},
            400,
        ),
        "ragged": (
            "/v1/models/tiny:predict",
            {"signature_name": "stylize_tensor", "inputs": [[[[1.0, 2.0, 3.0]], [[1.0, 2.0]]]]},
            400,
        ),
        "extra input": (
            "/v1/models/multi:predict",
            {"inputs": {"image_bytes": [b64(png)], "style_weights": [1, 0], "x": 1}},
            400,
        ),
        "row style weights": (
            "/v1/models/multi:predict",
            {"instances": [{"image_bytes": b64(png), "style_weights": [1.0, 0.0]}]},
            400,
        ),
    }


@pytest.mark.parametrize("case", sorted(_bad_cases(b"")))
def test_bad_request_gets_4xx_and_server_keeps_serving(setup, case):
    path, body, want = _bad_cases(setup["png"])[case]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = raw(setup["server"], "POST", path, data, {"Content-Type": "application/json"})
    assert status == want, answer
    assert set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"]
    assert not answer["error"].startswith("Graph execution error")
    assert_tiny_answers(setup)


def test_get_errors(setup):
    assert raw(setup["server"], "GET", "/v1/models/nope")[0] == 404
    assert raw(setup["server"], "GET", "/v1/models/tiny/versions/5/metadata")[0] == 404
    assert raw(setup["server"], "GET", "/v1/models/tiny:predict")[0] == 405
    assert raw(setup["server"], "POST", "/v1/models/tiny", b"{}")[0] == 405


def test_concurrent_clients(setup):
    client = RestClient(setup["server"].url, "tiny")
    want = expected_png(setup["nets"]["tiny"], setup["pixels"])
    errors, done = [], []

    def worker(count):
        for _ in range(count):
            try:
                [out] = client.stylize([setup["png"]])
                if np.abs(decode_png(out) - want).max() > 1:
                    errors.append("wrong output")
                done.append(1)
            except Exception as exc:  # pylint: disable=broad-except  # count every failure
                errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(25,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(done) == 200


def test_nst_serve_cli(setup):
    # SIG_DFL in the child: Python ignores Ctrl-C if it starts with SIGINT ignored, as it is
    # when a shell runs the suite in the background.
    proc = subprocess.Popen(
        [str(VENV_BIN / "nst-serve"), f"--model_base_path={setup['base']}", "--port=0"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)$", line.strip())
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        assert "multi, swap, tiny" in line
        client = RestClient(match.group(1), "tiny")
        assert client.status()["model_version_status"][0]["state"] == "AVAILABLE"
        [out] = client.stylize([setup["png"]])
        assert np.abs(decode_png(out) - expected_png(setup["nets"]["tiny"], setup["pixels"])).max() <= 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    missing = subprocess.run(
        [str(VENV_BIN / "nst-serve"), f"--model_base_path={setup['base']}/none"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("nst-serve: error: --model_base_path")


def test_models_config_parses_as_tf_serving_config():
    text_format = pytest.importorskip("google.protobuf.text_format")
    config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    text = (REPO / "export" / "models.config").read_text()
    config = text_format.Parse(text, config_pb2.ModelServerConfig())
    names = {c.name: c.base_path for c in config.model_config_list.config}
    assert names["style"] == "/models/style" and len(names) == 6


def test_grpc_client_against_a_prediction_service(setup):
    """GrpcClient's requests, answered by a minimal PredictionService over our SavedModel."""
    grpc = pytest.importorskip("grpc")
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    service_grpc = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    from concurrent import futures  # pylint: disable=import-outside-toplevel

    from nst_tf.serving.client import GrpcClient  # pylint: disable=import-outside-toplevel

    servable = setup["server"].repository.get("multi")

    class Service(service_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802  (gRPC method name)
            assert request.model_spec.name == "multi"
            fn = servable.signatures[request.model_spec.signature_name or "serving_default"]
            outputs = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
            response = predict_pb2.PredictResponse()
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service_grpc.add_PredictionServiceServicer_to_server(Service(), grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        client = GrpcClient(f"127.0.0.1:{port}", "multi")
        [out] = client.stylize([setup["png"]], style_weights=[1.0, 0.0])
        want = expected_png(setup["nets"]["multi"], setup["pixels"], [1.0, 0.0])
        assert np.abs(decode_png(out) - want).max() <= 1
        client.close()
    finally:
        grpc_server.stop(None)
