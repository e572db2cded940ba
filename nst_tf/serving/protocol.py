"""TF Serving's REST protocol as pure functions: URLs, predict requests and responses, status
and metadata JSON, request limits and error messages.

Nothing here touches HTTP or a model: :mod:`nst_tf.serving.server` reads the request, calls
these functions and writes what they return; a function that refuses a request raises
:class:`RequestError` with the HTTP status to answer. The JSON shapes are TF Serving's
(``tensorflow_serving/g3doc/api_rest.md``), so the same clients work against both servers:

* predict requests in the row (``instances``) or columnar (``inputs``) format, with
  ``{"b64": ...}`` for bytes, checked against the signature's dtypes and shapes;
* responses as ``predictions`` (row) or ``outputs`` (columnar), outputs named ``*_bytes``
  base64-encoded as ``{"b64": ...}``;
* errors as ``{"error": "<message>"}``, for every status.
"""

import base64
import binascii
import json
import re
from http import HTTPStatus

import numpy as np
import tensorflow as tf

from nst_tf import images

DEFAULT_SIGNATURE = "serving_default"
# Formats the exported graphs decode (nst_tf.images.decode_image_tensor).
IMAGE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP"})

_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>/metadata|:predict|:classify|:regress)?/?$"
)


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status code to answer with."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = int(status)


# --------------------------------------------------------------------------- URLs


def parse_version(text):
    """The version of a ``/versions/<v>`` URL (None when absent), or a 400."""
    if text is None:
        return None
    if not text.isdigit():
        raise RequestError(HTTPStatus.BAD_REQUEST, f"version must be an integer, not {text!r}")
    return int(text)


def parse_model_path(method, path):
    """``/v1/models/<name>[/versions/<v>][suffix]`` -> ``(name, version or None, suffix)``.

    ``suffix`` is ``""``, ``"/metadata"``, ``":predict"``, ``":classify"`` or ``":regress"``;
    any other path, and version labels, are a 404. ``method`` only names the request in
    the error message.
    """
    path = path.split("?", 1)[0]
    match = _MODEL_URL.match(path)
    if not match:
        raise RequestError(HTTPStatus.NOT_FOUND, f"Malformed request: {method} {path}")
    if match["label"] is not None:
        raise RequestError(HTTPStatus.NOT_FOUND, "version labels are not supported; use /versions/<v>")
    return match["name"], parse_version(match["version"]), match["suffix"] or ""


# ------------------------------------------------------------------ predict request


def parse_json(data, max_depth):
    """A request body (bytes) -> its JSON value, or a 400.

    Refuses what is not JSON and lists and objects nested more than ``max_depth`` deep,
    which bounds the recursion of everything that walks the request afterwards (a
    900-level nesting made it a RecursionError). The depth is counted level by level,
    without recursion.
    """
    too_deep = RequestError(HTTPStatus.BAD_REQUEST, f"JSON nested more than {max_depth} levels deep")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"JSON parse error: {exc}") from None
    except RecursionError:  # deeper than even the parser's own recursion limit
        raise too_deep from None
    level, depth = [value], 0
    while True:
        level = [v for v in level if isinstance(v, (list, dict))]
        if not level:
            return value
        depth += 1
        if depth > max_depth:
            raise too_deep
        level = [child for v in level for child in (v.values() if isinstance(v, dict) else v)]


def signature_name(body, available):
    """The signature a predict ``body`` asks for (default ``serving_default``), checked
    against ``available`` (the servable's signature names)."""
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
    name = body.get("signature_name") or DEFAULT_SIGNATURE
    if not isinstance(name, str) or name not in available:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            f'Serving signature name: "{name}" not found in signature def (have {sorted(available)})',
        )
    return name


def parse_predict_request(body, specs):
    """TF Serving predict JSON -> (``{input name: array}``, row format?).

    ``specs`` maps the signature's input names to their ``tf.TensorSpec``; every input
    must be given, converted to the spec's dtype and compatible with its shape.
    """
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(
            HTTPStatus.BAD_REQUEST, "request must have exactly one of 'instances' (row) or 'inputs' (columnar)"
        )
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
        raise RequestError(
            HTTPStatus.BAD_REQUEST, f"inputs must be {sorted(specs)}; missing {missing}, unexpected {extra}"
        )
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
        raise RequestError(HTTPStatus.BAD_REQUEST, f"each instance must be an object with inputs {names}")
    columns = {}
    for i, row in enumerate(instances):
        if set(row) != set(names):
            raise RequestError(
                HTTPStatus.BAD_REQUEST, f"instance {i}: inputs must be {sorted(names)}, got {sorted(row)}"
            )
        for name in names:
            columns.setdefault(name, []).append(row[name])
    return columns


def _decode_strings(value, where):
    """Nested JSON list of ``{"b64": ...}`` / plain strings -> nested list of bytes."""
    if isinstance(value, list):
        return [_decode_strings(v, where) for v in value]
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise RequestError(HTTPStatus.BAD_REQUEST, f'{where}: a bytes value must be {{"b64": "..."}}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: invalid base64 ({exc})") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RequestError(
        HTTPStatus.BAD_REQUEST, f'{where}: expected a string or {{"b64": ...}}, got {type(value).__name__}'
    )


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
            # A number beyond the dtype's range becomes inf, refused below.
            with np.errstate(over="ignore"):
                array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise RequestError(
                HTTPStatus.BAD_REQUEST, f"{where}: cannot convert to {spec.dtype.name} ({exc})"
            ) from None
        # Python's JSON reads NaN, Infinity and 1e309 as floats; a net turns them into garbage.
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise RequestError(
                HTTPStatus.BAD_REQUEST, f"{where}: NaN or infinite values (or numbers beyond {spec.dtype.name})"
            )
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: shape {list(array.shape)} does not match {spec.shape}")
    return array


def _check_numbers(value, where):
    if isinstance(value, list):
        for v in value:
            _check_numbers(v, where)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: expected numbers, got {type(value).__name__}")


# ------------------------------------------------------------------ request limits


def check_limits(inputs, max_batch_size, max_image_pixels):
    """Refuse batches and images larger than the bounds (413).

    Encoded images (inputs named ``*_bytes``) are measured from their headers, without
    decoding the pixels (:func:`nst_tf.images.read_image_header`, the decompression-bomb
    guard); they must be one of :data:`IMAGE_FORMATS` (400 otherwise).
    """
    for name, array in inputs.items():
        if array.ndim and len(array) > max_batch_size:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"input '{name}': batch of {len(array)} exceeds {max_batch_size}"
            )
        if array.dtype == object and name.endswith("_bytes"):
            for i, data in enumerate(array.reshape(-1)):
                _check_image(data, f"input '{name}'[{i}]", max_image_pixels)
        elif array.ndim == 4 and array.shape[-1] in (1, 3, 4):
            pixels = array.shape[1] * array.shape[2]
            if pixels > max_image_pixels:
                raise RequestError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"input '{name}': {pixels} pixels per image exceeds {max_image_pixels}",
                )


def _check_image(data, where, max_image_pixels):
    """Refuse an encoded image by its header: too many pixels (413), not an image or not one of
    :data:`IMAGE_FORMATS` (400)."""
    try:
        with images.read_image_header(data, where, max_image_pixels) as image:
            image_format = image.format
    except images.ImageTooLargeError as exc:
        # Pillow's own guard, far above any sane limit, refuses before the size is known.
        message = f"{where}: {exc.pixels} pixels exceeds {max_image_pixels}" if exc.pixels else str(exc)
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message) from None
    except Exception:  # pylint: disable=broad-except  # ImageError, or one of the many types Pillow raises for junk
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: not an image (JPEG, PNG, GIF or BMP)") from None
    if image_format not in IMAGE_FORMATS:
        raise RequestError(
            HTTPStatus.BAD_REQUEST, f"{where}: {image_format} images are not supported (JPEG, PNG, GIF, BMP)"
        )


# ------------------------------------------------------------------ responses


def format_predict_response(outputs, row_format):
    """``{output name: array}`` -> TF Serving's ``predictions`` / ``outputs`` JSON."""
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": _encode_value(outputs[names[0]], names[0])}
        return {"outputs": {n: _encode_value(outputs[n], n) for n in names}}
    batch = {len(outputs[n]) if outputs[n].ndim else -1 for n in names}
    if len(batch) != 1 or -1 in batch:
        raise RequestError(
            HTTPStatus.BAD_REQUEST, "outputs do not share a batch dimension; use the columnar 'inputs' format"
        )
    if len(names) == 1:
        return {"predictions": [_encode_value(row, names[0]) for row in outputs[names[0]]]}
    size = batch.pop()
    return {"predictions": [{n: _encode_value(outputs[n][i], n) for n in names} for i in range(size)]}


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


def format_model_status(name, version, states):
    """TF Serving's ``GetModelStatus`` JSON of ``states`` (``{version: (state, error code,
    message)}``), newest first; a 404 when ``states`` is empty."""
    if not states:
        target = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
        raise RequestError(HTTPStatus.NOT_FOUND, f"Could not find any versions of model {target}")
    return {
        "model_version_status": [
            {"version": str(v), "state": state, "status": {"error_code": code, "error_message": msg}}
            for v, (state, code, msg) in sorted(states.items(), reverse=True)
        ]
    }


def format_metadata(name, version, signature_defs):
    """TF Serving's ``GetModelMetadata`` JSON for one loaded ``version``."""
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": signature_defs}},
    }


def format_error(message):
    """The JSON body of every error answer, whatever its status: ``{"error": message}``."""
    return {"error": message}


def tf_error_message(exc):
    """The line of a TensorFlow error that says what was wrong, without node names and stacks."""
    lines = (getattr(exc, "message", None) or str(exc)).splitlines()
    noise = ("Graph execution error", "Detected at node", "<stack traces", "\t", " ", "[[")
    useful = [line for line in lines if line.strip() and not line.startswith(noise)]
    return useful[-1].strip() if useful else type(exc).__name__
