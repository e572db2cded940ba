"""The embedded endpoint that speaks TF Serving's REST API for our SavedModels.

``nst-serve`` is for users without docker: it serves every model folder under
``model_base_path`` (``<name>/<version>/saved_model.pb``, the layout ``nst-export``
writes and TF Serving reads) with the same URLs and JSON as ``tensorflow/serving``,
so :mod:`nst_tf.serving.client` works against both. Routes (:meth:`ModelServer.app`):

* ``GET  /v1/models/<name>[/versions/<v>]``            version status
* ``GET  /v1/models/<name>[/versions/<v>]/metadata``   signature defs
* ``POST /v1/models/<name>[/versions/<v>]:predict``     ``instances`` (row) or
  ``inputs`` (columnar) request, ``{"b64": ...}`` for bytes; answers
  ``predictions`` or ``outputs``; outputs named ``*_bytes`` come back as b64.

Every answer is JSON, errors ``{"error": ...}`` whatever their status (any other path
is a 404, any other method a 405), and the server carries on.

The pieces: :class:`ServerConfig` holds every limit (each a ``nst-serve`` flag); a
poller thread keeps the :class:`~nst_tf.serving.repository.ModelRepository` in line
with the folder; :mod:`nst_tf.serving.protocol` is the JSON side as pure functions;
HTTP is Starlette on uvicorn. A connection costs a coroutine on the event loop, not a
thread. Predict requests are parsed, checked and run in a pool of
``max_concurrent_predictions`` threads, so the event loop never waits for TensorFlow
or for a large JSON body. :mod:`nst_tf.serving.connection` bounds each connection.

What a client past a limit gets (``*``: and its connection is closed):

* request line and headers over ``max_header_bytes``: 431*; not complete within
  ``header_timeout_seconds``: 408*;
* a body over ``max_request_bytes``: 413*; not complete within ``body_timeout_seconds``: 408*;
* JSON nested deeper than ``max_json_depth``, NaN or infinite numbers: 400;
* a batch over ``max_batch_size``, an image over ``max_image_pixels`` (from its header): 413;
* a connection beyond ``max_connections``: 503*;
* idle on a kept-alive connection for ``keep_alive_seconds``, or not reading an answer
  for ``body_timeout_seconds``: closed.
"""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import socket
import threading
from http import HTTPStatus

import tensorflow as tf
import uvicorn
from absl import logging
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

from nst_tf.config import option
from nst_tf.errors import NSTError
from nst_tf.serving import protocol
from nst_tf.serving.connection import CLOSE
from nst_tf.serving.connection import BoundedH11Protocol
from nst_tf.serving.connection import json_error
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
    # Bounds of one request.
    max_request_bytes: int = option(
        32 * 1024 * 1024, "Largest request body accepted, in bytes (bigger: HTTP 413).", min=1
    )
    max_json_depth: int = option(
        32, "Deepest nesting of JSON lists and objects in a request (deeper: HTTP 400).", min=1
    )
    max_image_pixels: int = option(4096 * 4096, "Largest image accepted, width x height (bigger: HTTP 413).", min=1)
    max_batch_size: int = option(64, "Most images (instances) in one request.", min=1)
    # Bounds of the connections: what a slow, idle or hostile client can hold.
    max_header_bytes: int = option(
        16 * 1024, "Largest request line plus headers, in bytes (bigger: HTTP 431).", min=1024
    )
    header_timeout_seconds: float = option(
        10.0, "Seconds for a request's line and headers to arrive (slower: HTTP 408, connection closed).", min=0.01
    )
    body_timeout_seconds: float = option(
        30.0,
        "Seconds for a request's body to arrive (slower: HTTP 408) and for a client to read its answer "
        "(slower: connection closed).",
        min=0.01,
    )
    keep_alive_seconds: float = option(
        5.0, "An idle kept-alive connection is closed after this many seconds.", min=0.01
    )
    max_connections: int = option(100, "Open connections at once; one beyond them gets HTTP 503.", min=1)
    # Bounds memory, since every image of every concurrent request holds its activations.
    max_concurrent_predictions: int = option(
        4, "Predict requests parsed and run at once (a pool of this many threads); further requests wait.", min=1
    )

    def __post_init__(self):
        # The flags check these bounds when parsed; this checks the Python API's values.
        for field in dataclasses.fields(self):
            low, value = field.metadata.get("min"), getattr(self, field.name)
            if low is not None and value < low:
                raise NSTError(f"--{field.metadata.get('flag', field.name)}: must be at least {low}, not {value}")


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
        self._stop = threading.Event()
        self._threads = []
        self.repository.poll()
        # Bound now, so that a busy port is reported here and port 0 has its number.
        self._socket = socket.create_server((config.host, config.port))
        self.address = self._socket.getsockname()[:2]
        self._predict_pool = concurrent.futures.ThreadPoolExecutor(
            config.max_concurrent_predictions, thread_name_prefix="nst-serve-predict"
        )
        connection = functools.partial(
            BoundedH11Protocol,
            header_timeout=config.header_timeout_seconds,
            write_timeout=config.body_timeout_seconds,
            max_connections=config.max_connections,
        )
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                self.app(),
                http=connection,
                h11_max_incomplete_event_size=config.max_header_bytes,
                timeout_keep_alive=config.keep_alive_seconds,
                timeout_graceful_shutdown=5,
                ws="none",
                lifespan="off",
                proxy_headers=False,
                server_header=False,
                access_log=False,
                log_config=None,  # absl's logging, as the rest of nst_tf
            )
        )

    @property
    def url(self):
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self):
        """Serve and poll in background threads (for tests, benchmarks and embedding)."""
        for target in (self._poll_loop, self._serve):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def serve_forever(self):
        """Serve in this thread until :meth:`shutdown`, SIGINT or SIGTERM (uvicorn's handlers then
        finish the requests under way and raise the signal again: KeyboardInterrupt for SIGINT)."""
        poller = threading.Thread(target=self._poll_loop, daemon=True)
        poller.start()
        self._threads.append(poller)
        try:
            self._serve()
        finally:
            self._stop.set()

    def shutdown(self):
        self._stop.set()
        self._uvicorn.should_exit = True
        for thread in self._threads:
            thread.join(timeout=10)
        self._predict_pool.shutdown(wait=False, cancel_futures=True)
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def _serve(self):
        asyncio.run(self._uvicorn.serve(sockets=[self._socket]))

    def _poll_loop(self):
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.repository.poll()
            except Exception:  # pylint: disable=broad-except  # keep polling after e.g. a vanished folder
                logging.exception("polling %s failed", self.config.model_base_path)

    # ------------------------------------------------------------------ HTTP

    def app(self):
        """The Starlette application: TF Serving's model URLs, and JSON errors for any other."""
        app = Starlette(
            routes=[Route("/v1/models/{model_path:path}", self.handle, methods=["GET", "POST"])],
            exception_handlers={HTTPException: _routing_error},
        )
        app.router.redirect_slashes = False  # /v1/models is a 404, as in TF Serving, not a redirect
        return app

    async def handle(self, request):
        """GET (and HEAD): status or metadata; POST: ``:predict``."""
        try:
            response = await self._respond(request)
        except RequestError as exc:
            response = json_error(exc.status, str(exc))
        # One failing request must not stop the server.
        except Exception as exc:  # pylint: disable=broad-except
            logging.exception("internal error on %s %s", request.method, request.url.path)
            response = json_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")
        logging.vlog(1, "%s %s %s: %d", request.client, request.method, request.url.path, response.status_code)
        return response

    async def _respond(self, request):
        if request.method == "POST":
            try:
                data = await read_body(request, self.config)
            except RequestError as exc:
                # The rest of the body is unread: the connection can carry no further request.
                return json_error(exc.status, str(exc), CLOSE)
        name, version, suffix = protocol.parse_model_path(request.method, request.url.path)
        if request.method != "POST":
            if suffix == "/metadata":
                return _json(self.metadata(name, version))
            if suffix:
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{suffix} needs POST")
            return _json(self.repository.status(name, version))
        if suffix in (":classify", ":regress"):
            raise RequestError(HTTPStatus.NOT_IMPLEMENTED, f"{suffix[1:]} is not supported; use :predict")
        if suffix != ":predict":
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, "POST is only for :predict")
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self._predict_pool, self._predict_json, name, version, data)
        return Response(answer, media_type="application/json")

    # ------------------------------------------------------------------ models

    def _predict_json(self, name, version, data):
        """:meth:`predict` from the request body's bytes to the answer's, in the predict pool."""
        body = protocol.parse_json(data, self.config.max_json_depth)
        return json.dumps(self.predict(name, version, body)).encode("utf-8")

    def predict(self, name, version, body):
        servable = self.repository.get(name, version)
        signature_name = protocol.signature_name(body, servable.signatures)
        specs = servable.input_specs(signature_name)
        inputs, row_format = protocol.parse_predict_request(body, specs)
        protocol.check_limits(inputs, self.config.max_batch_size, self.config.max_image_pixels)
        fn = servable.signatures[signature_name]
        try:
            result = fn(**{n: tf.constant(a, dtype=specs[n].dtype) for n, a in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, protocol.tf_error_message(exc)) from None
        return protocol.format_predict_response({k: v.numpy() for k, v in result.items()}, row_format)

    def metadata(self, name, version):
        servable = self.repository.get(name, version)
        return protocol.format_metadata(name, servable.version, servable.signature_defs)


def _json(payload, status=HTTPStatus.OK):
    # json.dumps as TF Serving writes: NaN stays NaN (Starlette's JSONResponse refuses it).
    return Response(json.dumps(payload).encode("utf-8"), int(status), media_type="application/json")


async def _routing_error(request, exc):
    """Starlette's 404 (no route) and 405 (a method the route lacks), as JSON."""
    if exc.status_code == HTTPStatus.NOT_FOUND:
        message = f"Malformed request: {request.method} {request.url.path}"
    elif exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        message = f"{request.method} is not supported; use {exc.headers['Allow']}"
    else:
        message = exc.detail
    return json_error(exc.status_code, message, exc.headers)


async def read_body(request, config):
    """The request's body: at most ``max_request_bytes`` (413), within ``body_timeout_seconds`` (408).

    A body shorter than its Content-Length waits for bytes that never come: the timeout is
    what frees its connection. A client gone mid-body is a 400 that nobody reads, not an
    internal error with a traceback.
    """
    length = request.headers.get("content-length")
    if length is None and "transfer-encoding" not in request.headers:
        raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length header required")
    timeout = config.body_timeout_seconds
    # h11 has checked that a Content-Length is a number.
    if length is not None and int(length) > config.max_request_bytes:
        if int(length) <= _DRAIN_LIMIT and request.headers.get("expect", "").lower() != "100-continue":
            # A client that sends its whole body before reading would otherwise get a reset, not the 413.
            with contextlib.suppress(asyncio.TimeoutError, ClientDisconnect):
                await asyncio.wait_for(_discard(request), timeout)
        raise RequestError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request of {length} bytes exceeds {config.max_request_bytes}"
        )
    try:
        return await asyncio.wait_for(_read(request, config.max_request_bytes), timeout)
    except asyncio.TimeoutError:
        raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"request body not received within {timeout:g} s") from None
    except ClientDisconnect:
        raise RequestError(HTTPStatus.BAD_REQUEST, "client disconnected before the end of the body") from None


async def _read(request, limit):
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # a chunked body, whose size no header announced
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body exceeds {limit} bytes")
    return bytes(body)


async def _discard(request):
    async for _ in request.stream():
        pass
