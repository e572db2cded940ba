"""The HTTP layer of the embedded endpoint that speaks TF Serving's REST API for our SavedModels.

``nst-serve`` is for users without docker: it serves every model folder under
``model_base_path`` (``<name>/<version>/saved_model.pb``, the layout
``nst-export`` writes and TF Serving reads) with the same URLs and JSON as
``tensorflow/serving``, so :mod:`nst_tf.serving.client` works against both:

* ``GET  /v1/models/<name>[/versions/<v>]``            version status
* ``GET  /v1/models/<name>[/versions/<v>]/metadata``   signature defs
* ``POST /v1/models/<name>[/versions/<v>]:predict``     ``instances`` (row) or
  ``inputs`` (columnar) request, ``{"b64": ...}`` for bytes; answers
  ``predictions`` or ``outputs``; outputs named ``*_bytes`` come back as b64.

A poller thread keeps the :class:`~nst_tf.serving.repository.ModelRepository`
in line with the folder (new versions loaded, the ones past ``num_versions``
unloaded). Requests are bounded in bytes, batch size and image pixels and
validated against the signature's dtypes and shapes before TensorFlow sees
them (:mod:`nst_tf.serving.protocol`, the JSON side as pure functions): a bad
request gets a 4xx and ``{"error": ...}`` and the server carries on.
"""

import dataclasses
import json
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import tensorflow as tf
from absl import logging

from nst_tf.config import option
from nst_tf.serving import protocol
from nst_tf.serving.protocol import RequestError
from nst_tf.serving.repository import ModelRepository

# An oversized body smaller than this is read and discarded so that the client
# (which sends the whole body before reading) receives the 413; beyond it the
# connection is simply closed.
_DRAIN_LIMIT = 64 * 1024 * 1024


@dataclasses.dataclass
class ServerConfig:
    """Settings of the embedded endpoint; the ``nst-serve`` flags map onto these fields."""

    model_base_path: str = option(
        "export/models", "Folder of models: <name>/<version>/saved_model.pb, as nst-export writes."
    )
    host: str = option("127.0.0.1", "Address to bind. The default answers this machine only; 0.0.0.0 exposes it.")
    port: int = option(8501, "REST port (TF Serving's default is 8501; 0: any free port).", min=0, max=65535)
    # The flag has TF Serving's name.
    poll_seconds: float = option(
        1.0, "How often to look for new or removed versions.", min=0.05, flag="file_system_poll_wait_seconds"
    )
    num_versions: int = option(
        2, "Newest versions of each model kept loaded (TF Serving: latest { num_versions }).", min=1
    )
    max_request_bytes: int = option(
        32 * 1024 * 1024, "Largest request body accepted, in bytes (bigger: HTTP 413).", min=1
    )
    max_image_pixels: int = option(4096 * 4096, "Largest image accepted, width x height (bigger: HTTP 413).", min=1)
    max_batch_size: int = option(64, "Most images (instances) in one request.", min=1)
    # Bounds memory, since every image of every concurrent request holds its activations.
    max_concurrent_predictions: int = option(4, "Model runs at once; further requests wait.", min=1)

    def __post_init__(self):
        for field in (
            "num_versions",
            "max_request_bytes",
            "max_image_pixels",
            "max_batch_size",
            "max_concurrent_predictions",
        ):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1, not {getattr(self, field)}")
        if self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, not {self.poll_seconds}")


class ModelServer:
    """The REST endpoint plus the folder poller.

    >>> with ModelServer(ServerConfig("export/models", port=0)) as server:
    ...     server.start()
    ...     print(server.url)
    """

    def __init__(self, config):
        self.config = config
        if not os.path.isdir(config.model_base_path):
            raise FileNotFoundError(f"{config.model_base_path}: no such directory")
        self.repository = ModelRepository(config.model_base_path, config.num_versions)
        self._predict_slots = threading.BoundedSemaphore(config.max_concurrent_predictions)
        self._stop = threading.Event()
        self._threads = []
        self.repository.poll()
        self.httpd = ThreadingHTTPServer((config.host, config.port), _make_handler(self))
        self.httpd.daemon_threads = True

    @property
    def url(self):
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        """Serve and poll in background threads (for tests, benchmarks and embedding)."""
        for target in (self._poll_loop, self.httpd.serve_forever):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def serve_forever(self):
        """Serve in this thread until :meth:`shutdown` or KeyboardInterrupt."""
        poller = threading.Thread(target=self._poll_loop, daemon=True)
        poller.start()
        self._threads.append(poller)
        try:
            self.httpd.serve_forever()
        finally:
            self._stop.set()

    def shutdown(self):
        self._stop.set()
        if any(t.is_alive() for t in self._threads):
            self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def _poll_loop(self):
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.repository.poll()
            except Exception:  # pylint: disable=broad-except  # keep polling after e.g. a vanished folder
                logging.exception("polling %s failed", self.config.model_base_path)

    # Request handling, called from the handler's threads.

    def predict(self, name, version, body):
        servable = self.repository.get(name, version)
        signature_name = protocol.signature_name(body, servable.signatures)
        specs = servable.input_specs(signature_name)
        inputs, row_format = protocol.parse_predict_request(body, specs)
        protocol.check_limits(inputs, self.config.max_batch_size, self.config.max_image_pixels)
        fn = servable.signatures[signature_name]
        with self._predict_slots:
            try:
                result = fn(**{n: tf.constant(a, dtype=specs[n].dtype) for n, a in inputs.items()})
            except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, protocol.tf_error_message(exc)) from None
        return protocol.format_predict_response({k: v.numpy() for k, v in result.items()}, row_format)

    def metadata(self, name, version):
        servable = self.repository.get(name, version)
        return protocol.format_metadata(name, servable.version, servable.signature_defs)


def _make_handler(server):
    config = server.config

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "nst-serve"
        # Seconds a connection may sit idle or stall mid-request before its thread is freed.
        timeout = 60

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            logging.vlog(1, "%s " + format, self.address_string(), *args)

        def _send_json(self, status, payload):
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _send_error(self, status, message):
            self._send_json(status, {"error": message})

        def _content_length(self):
            text = self.headers.get("Content-Length")
            if text is None:
                self.close_connection = True
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length header required")
            if not text.isdigit():
                self.close_connection = True
                raise RequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {text!r}")
            return int(text)

        def handle_expect_100(self):
            # Refuse an oversized body before the client sends it (curl waits for this).
            length = self.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > config.max_request_bytes:
                self.close_connection = True
                self._send_error(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request of {length} bytes exceeds {config.max_request_bytes}"
                )
                return False
            return super().handle_expect_100()

        def _read_body(self):
            length = self._content_length()
            if length > config.max_request_bytes:
                self.close_connection = True
                if length <= _DRAIN_LIMIT:
                    remaining = length
                    while remaining > 0:
                        chunk = self.rfile.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        remaining -= len(chunk)
                raise RequestError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request of {length} bytes exceeds {config.max_request_bytes}"
                )
            data = self.rfile.read(length)
            try:
                return json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"JSON parse error: {exc}") from None

        def _handle(self, respond):
            try:
                self._send_json(HTTPStatus.OK, respond())
            except RequestError as exc:
                self._send_error(exc.status, str(exc))
            # One failing request must not stop the server.
            except Exception as exc:  # pylint: disable=broad-except
                logging.exception("internal error on %s", self.path)
                self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")

        def do_GET(self):  # pylint: disable=invalid-name
            def respond():
                name, version, suffix = protocol.parse_model_path(self.command, self.path)
                if suffix == "/metadata":
                    return server.metadata(name, version)
                if suffix:
                    raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{suffix} needs POST")
                return server.repository.status(name, version)

            self._handle(respond)

        def do_POST(self):  # pylint: disable=invalid-name
            def respond():
                body = self._read_body()
                name, version, suffix = protocol.parse_model_path(self.command, self.path)
                if suffix in (":classify", ":regress"):
                    raise RequestError(HTTPStatus.NOT_IMPLEMENTED, f"{suffix[1:]} is not supported; use :predict")
                if suffix != ":predict":
                    raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, "POST is only for :predict")
                return server.predict(name, version, body)

            self._handle(respond)

    return Handler
