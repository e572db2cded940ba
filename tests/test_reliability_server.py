"""nst-serve against slow, idle, malformed and hostile clients (issue 20, item 10).

Each test but two is a defect the probe found in the ThreadingHTTPServer version (each
comment says which); the client that does not read its answer and the EXIF orientation
guard the rest of the item. All run over real sockets on 127.0.0.1. No test measures
speed: the servers' timeouts are set short, and a test waits, up to a generous deadline,
for what must happen.
"""

import base64
import http.client
import io
import json
import logging
import os
import select
import shutil
import socket
import struct
import threading
import time
import zlib

import keras
import numpy as np
import pytest
from PIL import Image

from nst_tf import export
from nst_tf import images
from nst_tf import models
from nst_tf.serving.server import ModelServer
from nst_tf.serving.server import ServerConfig

SIZE = 32
TIMEOUT = 1.0  # the test servers' header and body timeouts, in seconds
WAIT = 60.0  # how long a test waits for something that must happen


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(5)
    return models.TransformNet(width=0.125, num_residual_blocks=1)


@pytest.fixture(scope="module")
def base(tmp_path_factory, net):
    base = tmp_path_factory.mktemp("models")
    export.export(export.ExportConfig("fast", str(base / "tiny")), model=net)
    return base


@pytest.fixture(scope="module")
def server(base):
    config = ServerConfig(
        str(base),
        port=0,
        poll_seconds=0.1,
        max_request_bytes=256 * 1024,
        max_image_pixels=64 * 64,
        header_timeout_seconds=TIMEOUT,
        body_timeout_seconds=TIMEOUT,
        keep_alive_seconds=TIMEOUT,
    )
    with ModelServer(config).start() as server:
        yield server


def png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def request(server, method, path, body=None, headers=None):
    """One request; returns (status, Content-Type, body bytes)."""
    conn = http.client.HTTPConnection(*server.address, timeout=WAIT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def post_json(server, path, text):
    return request(server, "POST", path, text.encode(), {"Content-Type": "application/json"})


def raw_exchange(server, data):
    """Send exactly these bytes; returns (status, Content-Type, body, closed after it?)."""
    with socket.create_connection(server.address, timeout=WAIT) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return response.status, response.getheader("Content-Type"), body, sock.recv(1) == b""


def json_error(content_type, body):
    assert content_type == "application/json"
    error = json.loads(body)["error"]
    assert isinstance(error, str) and error
    return error


def assert_serves(server):
    pixels = (np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    instances = json.dumps({"instances": [{"b64": base64.b64encode(png_bytes(pixels)).decode()}]})
    status, _, body = post_json(server, "/v1/models/tiny:predict", instances)
    assert status == 200, body


def logged_problems(caplog):
    """Warnings and errors logged, and how many carry a traceback."""
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    return len(problems), sum(r.exc_info is not None for r in problems)


def test_short_body_gets_a_json_408_and_no_traceback(server, caplog):
    # The probe: held a thread for 60 s, then a 500 and an unhandled traceback.
    head = b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, content_type, body, closed = raw_exchange(server, head + b'Content-Length: 1000\r\n\r\n{"instances": [')
    assert status == 408
    assert "body" in json_error(content_type, body)
    assert closed
    # A client that leaves mid-body is no internal error either.
    with socket.create_connection(server.address, timeout=WAIT) as sock:
        sock.sendall(head + b'Content-Length: 1000\r\n\r\n{"instances": [')
    assert_serves(server)
    assert logged_problems(caplog) == (0, 0)
    assert_serves(server)


def test_dripped_header_and_idle_connection_are_closed(server):
    # The probe: a header dripped one byte every 10 s was still open at 80 s.
    head = b"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 400 + b"\r\n\r\n"
    with (
        socket.create_connection(server.address, timeout=WAIT) as idle,
        socket.create_connection(server.address, timeout=WAIT) as drip,
    ):
        for byte in head:  # 0.1 s a byte: 40 s for the whole head, 40x the server's timeout
            drip.sendall(bytes([byte]))
            if select.select([drip], [], [], 0.1)[0]:
                break
        else:
            pytest.fail("the dripped head was sent in full and the server never answered")
        response = http.client.HTTPResponse(drip)
        response.begin()
        assert response.status == 408
        assert "headers" in json_error(response.getheader("Content-Type"), response.read())
        # A connection that sent nothing is closed without an answer.
        assert idle.recv(1) == b""
    assert_serves(server)


@pytest.fixture(scope="module")
def roomy(base):
    """A server with long header timeouts and a cap of 4 connections."""
    config = ServerConfig(
        str(base), port=0, max_connections=4, header_timeout_seconds=WAIT, body_timeout_seconds=TIMEOUT
    )
    with ModelServer(config).start() as server:
        yield server


def test_idle_connections_hold_no_thread_and_are_capped(roomy):
    # The probe: 50 idle connections made 50 threads, with no cap.
    threads = threading.active_count()
    idle = [socket.create_connection(roomy.address, timeout=WAIT) for _ in range(4)]
    try:
        # Accepted after the four idle ones: the fifth connection is over the cap.
        status, content_type, body = request(roomy, "GET", "/v1/models/tiny")
        assert status == 503
        assert "busy" in json_error(content_type, body)
        assert threading.active_count() == threads
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + WAIT
    while request(roomy, "GET", "/v1/models/tiny")[0] != 200:
        assert time.monotonic() < deadline, "the server stayed busy after the idle connections closed"
        time.sleep(0.1)


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="reads the connection's state from Linux's TCP_INFO")
def test_client_not_reading_its_answer_is_dropped(roomy):
    # 16 x 128 x 128 x 3 floats come back as about 15 MB of JSON, more than the sockets buffer.
    pixels = np.random.default_rng(1).integers(0, 256, (16, 128, 128, 3)).tolist()
    body = json.dumps({"signature_name": "stylize_tensor", "inputs": pixels}).encode()
    head = f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(roomy.address)
        sock.sendall(head + body)
        # Read nothing; the server must reset the connection (TCP_INFO's first byte: the state, 7 = CLOSE).
        deadline = time.monotonic() + WAIT
        while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != 7:
            assert time.monotonic() < deadline, "the server kept waiting for a client that does not read"
            time.sleep(0.1)


def test_deeply_nested_json_gets_a_json_400_and_few_log_lines(server, caplog):
    # The probe: 900 levels gave a 500 RecursionError and about 1,000 log lines per request.
    for depth in (900, 100_000):
        text = '{"instances": ' + "[" * depth + "]" * depth + "}"
        status, content_type, body = post_json(server, "/v1/models/tiny:predict", text)
        assert status == 400
        assert "nested" in json_error(content_type, body)
    assert logged_problems(caplog) == (0, 0)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_a_json_405(server, method):
    # The probe: PUT, DELETE, HEAD and OPTIONS answered with HTML.
    status, content_type, body = request(server, method, "/v1/models/tiny", b"{}")
    assert status == 405
    assert method in json_error(content_type, body)


def test_head_answers_with_the_headers_of_get(server):
    conn = http.client.HTTPConnection(*server.address, timeout=WAIT)
    try:
        for path, want in (("/v1/models/tiny", 200), ("/v1/models/nope", 404), ("/v2/x", 404)):
            conn.request("HEAD", path)
            response = conn.getresponse()
            assert (response.status, response.getheader("Content-Type")) == (want, "application/json")
            assert response.read() == b""
    finally:
        conn.close()


def test_every_error_status_has_a_json_body(server):
    cases = {
        "unknown path": (request(server, "GET", "/nope"), 404),
        "unknown model": (request(server, "GET", "/v1/models/nope"), 404),
        "bare models path": (request(server, "GET", "/v1/models"), 404),
        "GET on :predict": (request(server, "GET", "/v1/models/tiny:predict"), 405),
        "oversized body": (post_json(server, "/v1/models/tiny:predict", " " * (256 * 1024 + 1)), 413),
        ":classify": (post_json(server, "/v1/models/tiny:classify", "{}"), 501),
    }
    status, content_type, body, closed = raw_exchange(
        server, b"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    )
    cases["oversized header"] = ((status, content_type, body), 431)
    assert closed
    cases["malformed request line"] = (raw_exchange(server, b"NOT HTTP AT ALL\r\n\r\n")[:3], 400)
    cases["no Content-Length"] = (
        raw_exchange(server, b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\n\r\n")[:3],
        411,
    )
    for case, ((status, content_type, body), want) in cases.items():
        assert status == want, case
        json_error(content_type, body)


def png_header(width, height):
    """A PNG whose header says width x height, with no pixel data."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_png_header_of_too_many_pixels_gets_413(server):
    # The probe: a 100000 x 100000 PNG header gave 400 "not an image".
    for side in (100_000, 65):  # beyond Pillow's own guard, and just beyond --max_image_pixels
        instances = json.dumps({"instances": [{"b64": base64.b64encode(png_header(side, side)).decode()}]})
        status, content_type, body = post_json(server, "/v1/models/tiny:predict", instances)
        assert status == 413
        assert "pixels" in json_error(content_type, body)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e309", "1e39"])
def test_non_finite_numbers_in_stylize_tensor_get_400(server, number):
    # The probe: NaN and 1e309 were accepted. (1e39 is finite, but not as float32.)
    rows = np.zeros((SIZE, SIZE, 3)).tolist()
    text = json.dumps({"signature_name": "stylize_tensor", "inputs": [rows]}).replace("0.0", number, 1)
    status, content_type, body = post_json(server, "/v1/models/tiny:predict", text)
    assert status == 400
    assert "infinite" in json_error(content_type, body)


def test_version_that_failed_to_load_is_retried_when_its_files_change(server, base, net, tmp_path):
    # The probe: a version whose files arrived non-atomically stayed END/404 forever.
    finished = export.export(export.ExportConfig("fast", str(tmp_path / "staging")), model=net)
    version = base / "copied" / "1"
    version.mkdir(parents=True)
    shutil.copy(f"{finished}/saved_model.pb", version)  # the graph first, the variables later

    def state():
        status, _, body = request(server, "GET", "/v1/models/copied")
        return json.loads(body)["model_version_status"][0]["state"] if status == 200 else None

    _wait_for(lambda: state() == "END", "the incomplete version was never reported")
    for entry in os.listdir(finished):
        if os.path.isdir(f"{finished}/{entry}"):
            shutil.copytree(f"{finished}/{entry}", version / entry)
        elif entry != "saved_model.pb":
            shutil.copy(f"{finished}/{entry}", version)
    _wait_for(lambda: state() == "AVAILABLE", "the completed version was never loaded")


def _wait_for(predicate, message):
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def test_exif_orientation_is_applied(server, net):
    # Stored 48 wide x 32 high, EXIF orientation 6: a phone's portrait, shown 32 wide x 48 high.
    photo = Image.fromarray((np.random.default_rng(2).random((32, 48, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", exif=exif, quality=90)
    jpeg = buffer.getvalue()
    instances = json.dumps({"instances": [{"b64": base64.b64encode(jpeg).decode()}]})
    status, _, body = post_json(server, "/v1/models/tiny:predict", instances)
    assert status == 200
    served = np.asarray(Image.open(io.BytesIO(base64.b64decode(json.loads(body)["predictions"][0]["b64"]))))
    upright = images.decode_image_bytes(jpeg, min_side=1)
    assert upright.shape == (48, 32, 3)
    want = np.round(np.clip(net(upright[None]).numpy()[0], 0, 1) * 255)
    assert served.shape == want.shape
    assert np.abs(served.astype(np.float32) - want).max() <= 1
