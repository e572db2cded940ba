"""An embedded HTTP endpoint that speaks TF Serving's REST API for our SavedModels.

``nst-serve`` is for users without docker: it serves every model folder under
``model_base_path`` (``<name>/<version>/saved_model.pb``, the layout
``nst-export`` writes and TF Serving reads) with the same URLs and JSON as
``tensorflow/serving``, so :mod:`nst_tf.serving.client` works against both:

* ``GET  /v1/models/<name>[/versions/<v>]``            version status
* ``GET  /v1/models/<name>[/versions/<v>]/metadata``   signature defs
* ``POST /v1/models/<name>[/versions/<v>]:predict``     ``instances`` (row) or
  ``inputs`` (columnar) request, ``{"b64": ...}`` for bytes; answers
  ``predictions`` or ``outputs``; outputs named ``*_bytes`` come back as b64.

A poller thread loads versions that appear (``nst-export`` renames a finished
directory into place, so a version is never seen half-written) and unloads the
ones that leave the ``num_versions`` newest, like TF Serving's ``latest``
version policy. Requests are bounded in bytes, batch size and image pixels and
validated against the signature's dtypes and shapes before TensorFlow sees
them: a bad request gets a 4xx and ``{"error": ...}`` and the server carries on.
"""

import base64
import binascii
import dataclasses
import io
import json
import os
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import json_format
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2

from nst_tf.config import option

_DEFAULT_SIGNATURE = "serving_default"
# Formats tf.io.decode_image reads; the exported graphs decode with it.
_IMAGE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP"})
# An oversized body smaller than this is read and discarded so that the client
# (which sends the whole body before reading) receives the 413; beyond it the
# connection is simply closed.
_DRAIN_LIMIT = 64 * 1024 * 1024

_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>/metadata|:predict|:classify|:regress)?/?$"
)


@dataclasses.dataclass
class ServerConfig:
    """Settings of the embedded endpoint; the ``nst-serve`` flags map onto these fields."""

    model_base_path: str = option("export/models", "Folder of models: <name>/<version>/saved_model.pb, as "
                                  "nst-export writes.")
    host: str = option("127.0.0.1", "Address to bind. The default answers this machine only; 0.0.0.0 "
                       "exposes it.")
    port: int = option(8501, "REST port (TF Serving's default is 8501; 0: any free port).", min=0, max=65535)
    # The flag has TF Serving's name.
    poll_seconds: float = option(1.0, "How often to look for new or removed versions.", min=0.05,
                                 flag="file_system_poll_wait_seconds")
    num_versions: int = option(2, "Newest versions of each model kept loaded (TF Serving: latest "
                               "{ num_versions }).", min=1)
    max_request_bytes: int = option(32 * 1024 * 1024, "Largest request body accepted, in bytes (bigger: "
                                    "HTTP 413).", min=1)
    max_image_pixels: int = option(4096 * 4096, "Largest image accepted, width x height (bigger: HTTP 413).",
                                   min=1)
    max_batch_size: int = option(64, "Most images (instances) in one request.", min=1)
    # Bounds memory, since every image of every concurrent request holds its activations.
    max_concurrent_predictions: int = option(4, "Model runs at once; further requests wait.", min=1)

    def __post_init__(self):
        for field in ("num_versions", "max_request_bytes", "max_image_pixels", "max_batch_size",
                      "max_concurrent_predictions"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1, not {getattr(self, field)}")
        if self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, not {self.poll_seconds}")


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status code to answer with."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = int(status)


# --------------------------------------------------------------------------- models


@dataclasses.dataclass
class Servable:
    """One loaded version of one model."""

    name: str
    version: int
    path: str
    signatures: dict  # signature name -> ConcreteFunction
    signature_defs: dict  # TF Serving's JSON form of the SignatureDefMap
    _loaded: object = dataclasses.field(repr=False, default=None)  # keeps variables alive


def read_signature_defs(saved_model_dir):
    """The ``serving`` meta graph's SignatureDefs as TF Serving's metadata JSON shows them."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {
                name: json_format.MessageToDict(sig, preserving_proto_field_name=True)
                for name, sig in meta_graph.signature_def.items()
            }
    raise ValueError(f"{saved_model_dir}: no meta graph tagged 'serve'")


def load_servable(name, version, path):
    loaded = tf.saved_model.load(path)
    signatures = {key: fn for key, fn in loaded.signatures.items() if not key.startswith("__")}
    return Servable(name, version, path, signatures, read_signature_defs(path), loaded)


def _version_dirs(model_dir):
    """Integer-named subfolders holding a finished SavedModel, newest first."""
    versions = []
    try:
        entries = os.listdir(model_dir)
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit() and os.path.isfile(os.path.join(model_dir, entry, "saved_model.pb")):
            versions.append(int(entry))
    return sorted(versions, reverse=True)


class ModelRepository:
    """The models under a base folder: which versions are loaded, failed or gone.

    ``poll`` brings the loaded set in line with the folder; request threads
    read it through ``get`` and ``status``. Loading happens outside the lock so
    requests to other versions keep being answered meanwhile.
    """

    def __init__(self, base_path, num_versions=2):
        self.base_path = os.path.abspath(base_path)
        self.num_versions = num_versions
        self._lock = threading.Lock()
        self._servables = {}  # name -> {version: Servable}
        self._failed = {}  # (name, version) -> error message; versions are immutable, never retried

    def poll(self):
        """Load new versions and unload stale ones; returns the number of changes."""
        try:
            names = sorted(e for e in os.listdir(self.base_path)
                           if not e.startswith(".") and os.path.isdir(os.path.join(self.base_path, e)))
        except OSError:
            names = []
        wanted = {}
        for name in names:
            versions = [v for v in _version_dirs(os.path.join(self.base_path, name))
                        if (name, v) not in self._failed]
            wanted[name] = versions[: self.num_versions]
        changes = 0
        for name, versions in wanted.items():
            for version in versions:
                with self._lock:
                    if version in self._servables.get(name, {}):
                        continue
                path = os.path.join(self.base_path, name, str(version))
                try:
                    servable = load_servable(name, version, path)
                except Exception as exc:  # pylint: disable=broad-except
                    # A broken export must not take the server down: report it in status.
                    logging.warning("cannot load %s: %s", path, exc)
                    with self._lock:
                        self._failed[(name, version)] = str(exc).splitlines()[0] if str(exc) else repr(exc)
                    changes += 1
                    continue
                logging.info("loaded model %s version %d", name, version)
                with self._lock:
                    self._servables.setdefault(name, {})[version] = servable
                changes += 1
        with self._lock:
            for name in list(self._servables):
                keep = set(wanted.get(name, []))
                for version in list(self._servables[name]):
                    if version not in keep:
                        del self._servables[name][version]
                        logging.info("unloaded model %s version %d", name, version)
                        changes += 1
                if not self._servables[name]:
                    del self._servables[name]
        return changes

    def names(self):
        with self._lock:
            return sorted(self._servables)

    def get(self, name, version=None):
        """The requested servable (newest when ``version`` is None) or a 404."""
        with self._lock:
            versions = self._servables.get(name)
            if not versions:
                raise RequestError(HTTPStatus.NOT_FOUND, f"Servable not found for request: Latest({name})")
            if version is None:
                return versions[max(versions)]
            if version not in versions:
                raise RequestError(HTTPStatus.NOT_FOUND,
                                   f"Servable not found for request: Specific({name}, {version})")
            return versions[version]

    def status(self, name, version=None):
        """TF Serving's ``GetModelStatus`` JSON."""
        with self._lock:
            states = {v: ("AVAILABLE", "OK", "") for v in self._servables.get(name, {})}
            for (failed_name, v), message in self._failed.items():
                if failed_name == name:
                    states[v] = ("END", "UNKNOWN", message)
        if version is not None:
            states = {v: s for v, s in states.items() if v == version}
        if not states:
            target = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise RequestError(HTTPStatus.NOT_FOUND, f"Could not find any versions of model {target}")
        return {
            "model_version_status": [
                {"version": str(v), "state": state, "status": {"error_code": code, "error_message": msg}}
                for v, (state, code, msg) in sorted(states.items(), reverse=True)
            ]
        }


# ------------------------------------------------------------------ request codec


def _decode_strings(value, where):
    """Nested JSON list of ``{"b64": ...}`` / plain strings -> nested list of bytes."""
    if isinstance(value, list):
        return [_decode_strings(v, where) for v in value]
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: a bytes value must be {{\"b64\": \"...\"}}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: invalid base64 ({exc})") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: expected a string or {{\"b64\": ...}}, "
                                               f"got {type(value).__name__}")


def _to_array(value, spec, where):
    """Convert one input's JSON value to a numpy array matching ``spec`` (a TensorSpec)."""
    if spec.dtype == tf.string:
        nested = _decode_strings(value, where)
        try:
            array = np.array(nested, dtype=object)
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: ragged nested lists") from None
        if array.dtype != object or any(not isinstance(x, bytes) for x in array.reshape(-1)):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: ragged nested lists")
    else:
        _check_numbers(value, where)
        try:
            array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"{where}: cannot convert to {spec.dtype.name} ({exc})") from None
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           f"{where}: shape {list(array.shape)} does not match {spec.shape}")
    return array


def _check_numbers(value, where):
    if isinstance(value, list):
        for v in value:
            _check_numbers(v, where)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           f"{where}: expected numbers, got {type(value).__name__}")


def _input_specs(fn):
    return fn.structured_input_signature[1]


def parse_predict_request(body, fn):
    """TF Serving predict JSON -> (``{input name: array}``, row format?)."""
    specs = _input_specs(fn)
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           "request must have exactly one of 'instances' (row) or 'inputs' (columnar)")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError(HTTPStatus.BAD_REQUEST, "'instances' must be a non-empty list")
        columns = _rows_to_columns(instances, specs)
        row_format = True
    else:
        inputs = body["inputs"]
        if len(specs) == 1 and not (isinstance(inputs, dict) and set(inputs) == set(specs)):
            # A single input may be given bare instead of as {name: value}.
            inputs = {next(iter(specs)): inputs}
        if not isinstance(inputs, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'inputs' must be an object of named inputs")
        columns = inputs
        row_format = False
    missing = sorted(set(specs) - set(columns))
    extra = sorted(set(columns) - set(specs))
    if missing or extra:
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           f"inputs must be {sorted(specs)}; missing {missing}, unexpected {extra}")
    arrays = {name: _to_array(columns[name], spec, f"input '{name}'") for name, spec in specs.items()}
    return arrays, row_format


def _rows_to_columns(instances, specs):
    names = list(specs)
    if len(names) == 1:
        only = names[0]
        # A single-input row may be the bare value or {name: value}.
        named = all(isinstance(r, dict) and set(r) == {only} for r in instances)
        return {only: [r[only] for r in instances] if named else instances}
    if not all(isinstance(r, dict) for r in instances):
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           f"each instance must be an object with inputs {names}")
    columns = {}
    for i, row in enumerate(instances):
        if set(row) != set(names):
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"instance {i}: inputs must be {sorted(names)}, got {sorted(row)}")
        for name in names:
            columns.setdefault(name, []).append(row[name])
    return columns


def _encode_value(value, name):
    """One output (or one row of it) as JSON; ``*_bytes`` outputs as ``{"b64": ...}`` like TF Serving."""
    if name.endswith("_bytes"):
        return _nested(value, lambda b: {"b64": base64.b64encode(b).decode("ascii")})
    if isinstance(value, bytes) or (isinstance(value, np.ndarray) and value.dtype == object):
        return _nested(value, lambda b: b.decode("utf-8", errors="replace"))
    return np.asarray(value).tolist()


def _nested(value, leaf):
    """Apply ``leaf`` to every element of a (nested) string array; a row may be a bare bytes object."""
    if not isinstance(value, np.ndarray):
        return leaf(value)
    if value.ndim == 0:
        return leaf(value.item())
    return [_nested(v, leaf) for v in value]


def format_predict_response(outputs, row_format):
    """``{output name: array}`` -> TF Serving's ``predictions`` / ``outputs`` JSON."""
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": _encode_value(outputs[names[0]], names[0])}
        return {"outputs": {n: _encode_value(outputs[n], n) for n in names}}
    batch = {len(outputs[n]) if outputs[n].ndim else -1 for n in names}
    if len(batch) != 1 or -1 in batch:
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           "outputs do not share a batch dimension; use the columnar 'inputs' format")
    if len(names) == 1:
        return {"predictions": [_encode_value(row, names[0]) for row in outputs[names[0]]]}
    size = batch.pop()
    return {"predictions": [{n: _encode_value(outputs[n][i], n) for n in names} for i in range(size)]}


# ----------------------------------------------------------------- image limits


def _image_pixels(data, where):
    """Width x height from the image header, without decoding the pixels."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in _IMAGE_FORMATS:
                raise RequestError(HTTPStatus.BAD_REQUEST,
                                   f"{where}: {img.format} images are not supported (JPEG, PNG, GIF, BMP)")
            width, height = img.size
    except RequestError:
        raise
    except Exception:  # pylint: disable=broad-except  # PIL raises many types for junk
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: not an image (JPEG, PNG, GIF or BMP)") from None
    return width * height


def check_limits(inputs, config):
    """Refuse batches and images larger than the configured bounds (413)."""
    for name, array in inputs.items():
        if array.ndim and len(array) > config.max_batch_size:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"input '{name}': batch of {len(array)} exceeds {config.max_batch_size}")
        if array.dtype == object and name.endswith("_bytes"):
            for i, data in enumerate(array.reshape(-1)):
                pixels = _image_pixels(data, f"input '{name}'[{i}]")
                if pixels > config.max_image_pixels:
                    raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                       f"input '{name}'[{i}]: {pixels} pixels exceeds "
                                       f"{config.max_image_pixels}")
        elif array.ndim == 4 and array.shape[-1] in (1, 3, 4):
            pixels = array.shape[1] * array.shape[2]
            if pixels > config.max_image_pixels:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                   f"input '{name}': {pixels} pixels per image exceeds "
                                   f"{config.max_image_pixels}")


# ----------------------------------------------------------------------- server


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
        if not isinstance(body, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
        signature_name = body.get("signature_name") or _DEFAULT_SIGNATURE
        if not isinstance(signature_name, str) or signature_name not in servable.signatures:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"Serving signature name: \"{signature_name}\" not found in signature def "
                               f"(have {sorted(servable.signatures)})")
        fn = servable.signatures[signature_name]
        inputs, row_format = parse_predict_request(body, fn)
        check_limits(inputs, self.config)
        if row_format:
            sizes = {len(a) for a in inputs.values()}
            if len(sizes) != 1:
                raise RequestError(HTTPStatus.BAD_REQUEST, "instances have different batch sizes per input")
        with self._predict_slots:
            try:
                result = fn(**{n: tf.constant(a, dtype=_input_specs(fn)[n].dtype) for n, a in inputs.items()})
            except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, _tf_error_message(exc)) from None
        return format_predict_response({k: v.numpy() for k, v in result.items()}, row_format)

    def metadata(self, name, version):
        servable = self.repository.get(name, version)
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": servable.signature_defs}},
        }


def _tf_error_message(exc):
    """The line of a TensorFlow error that says what was wrong, without node names and stacks."""
    lines = (getattr(exc, "message", None) or str(exc)).splitlines()
    noise = ("Graph execution error", "Detected at node", "<stack traces", "\t", " ", "[[")
    useful = [line for line in lines if line.strip() and not line.startswith(noise)]
    return useful[-1].strip() if useful else type(exc).__name__


def _parse_version(text):
    if text is None:
        return None
    if not text.isdigit():
        raise RequestError(HTTPStatus.BAD_REQUEST, f"version must be an integer, not {text!r}")
    return int(text)


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

        def _route(self):
            path = self.path.split("?", 1)[0]
            match = _MODEL_URL.match(path)
            if not match:
                raise RequestError(HTTPStatus.NOT_FOUND, f"Malformed request: {self.command} {path}")
            if match["label"] is not None:
                raise RequestError(HTTPStatus.NOT_FOUND,
                                   "version labels are not supported; use /versions/<v>")
            return match["name"], _parse_version(match["version"]), match["suffix"] or ""

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
                self._send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                 f"request of {length} bytes exceeds {config.max_request_bytes}")
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
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                   f"request of {length} bytes exceeds {config.max_request_bytes}")
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
                name, version, suffix = self._route()
                if suffix == "/metadata":
                    return server.metadata(name, version)
                if suffix:
                    raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{suffix} needs POST")
                return server.repository.status(name, version)

            self._handle(respond)

        def do_POST(self):  # pylint: disable=invalid-name
            def respond():
                body = self._read_body()
                name, version, suffix = self._route()
                if suffix in (":classify", ":regress"):
                    raise RequestError(HTTPStatus.NOT_IMPLEMENTED,
                                       f"{suffix[1:]} is not supported; use :predict")
                if suffix != ":predict":
                    raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, "POST is only for :predict")
                return server.predict(name, version, body)

            self._handle(respond)

    return Handler
