"""Clients for our exported models behind TF Serving or ``nst-serve``.

:class:`RestClient` speaks the REST API (stdlib ``urllib`` only, no TensorFlow
import), so it works against ``tensorflow/serving`` on port 8501 and against
``nst-serve`` alike. :class:`GrpcClient` uses TF Serving's gRPC API on port
8500 through the optional ``tensorflow-serving-api`` package
(``pip install nst_tf[grpc]``), imported only when a GrpcClient is created.

>>> client = RestClient("http://127.0.0.1:8501", "candy")
>>> [png] = client.stylize([open("photo.jpg", "rb").read()])

An arbitrary-style (AdaIN) model takes the painting with every request, or its style vector,
computed once and kept by the client:

>>> adain = RestClient("http://127.0.0.1:8501", "adain")
>>> [png] = adain.stylize_with_style([photo], [painting], alpha=0.8)
>>> [vector] = adain.style_vector([painting])
>>> [png] = adain.stylize_with_vector([photo], vector, alpha=0.8)
"""

import base64
import json
import urllib.error
import urllib.request

from nst_tf.errors import NSTError


class ServingError(NSTError):
    """The server refused or failed a request; ``status`` is the HTTP status (gRPC: the code name)."""

    def __init__(self, status, message):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _b64(data):
    return {"b64": base64.b64encode(data).decode("ascii")}


def _alphas(alpha):
    """``alpha`` as the signatures' ``[1]`` (one for the batch) or ``[B]`` (one per image) list."""
    return [float(a) for a in alpha] if isinstance(alpha, (list, tuple)) else [float(alpha)]


def blend_style_vectors(vectors, weights):
    """The weighted mix ``Σ w_s v_s / Σ w_s`` of style vectors (lists of ``2C`` floats): several
    styles in one, as :meth:`nst_tf.models.StyleVector.blend` mixes them."""
    if len(vectors) != len(weights) or not vectors:
        raise ValueError(f"{len(vectors)} style vectors but {len(weights)} weights")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weights must sum to a positive number")
    return [sum(float(w) * float(v[i]) for w, v in zip(weights, vectors)) / total for i in range(len(vectors[0]))]


class RestClient:
    """One model on a TF Serving-compatible REST endpoint."""

    def __init__(self, url="http://127.0.0.1:8501", model="default", version=None, timeout=120.0):
        self.url = url.rstrip("/")
        self.model = model
        self.version = version
        self.timeout = timeout

    @property
    def model_url(self):
        base = f"{self.url}/v1/models/{self.model}"
        return base if self.version is None else f"{base}/versions/{int(self.version)}"

    def _request(self, url, payload=None):
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                message = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                message = body.decode("utf-8", errors="replace") or exc.reason
            raise ServingError(exc.code, message) from None
        except urllib.error.URLError as exc:
            raise ServingError("unreachable", f"{url}: {exc.reason}") from None

    def status(self):
        """``GET /v1/models/<name>``: ``{"model_version_status": [...]}``."""
        return self._request(self.model_url)

    def metadata(self):
        """``GET .../metadata``: the model's signature defs."""
        return self._request(self.model_url + "/metadata")

    def predict(self, instances=None, inputs=None, signature_name=None):
        """``:predict`` with ``instances`` (row) or ``inputs`` (columnar) JSON; returns the answer JSON."""
        if (instances is None) == (inputs is None):
            raise ValueError("give exactly one of instances or inputs")
        payload = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name:
            payload["signature_name"] = signature_name
        return self._request(self.model_url + ":predict", payload)

    def stylize(self, images, style_weights=None):
        """Encoded JPEG/PNG images -> stylized PNG bytes, through ``serving_default``.

        ``style_weights`` (multi-style models) apply to the whole batch, so the
        request uses the columnar format where inputs may differ in batch size.
        """
        encoded = [_b64(data) for data in images]
        if style_weights is None:
            outputs = self.predict(instances=encoded)["predictions"]
        else:
            outputs = self.predict(inputs={"image_bytes": encoded, "style_weights": [float(w) for w in style_weights]})[
                "outputs"
            ]
        return [base64.b64decode(out["b64"]) for out in outputs]

    def stylize_tensor(self, images, style_weights=None):
        """Float NHWC images in [0, 255] (nested lists or an array) -> the same, via ``stylize_tensor``."""
        images = images.tolist() if hasattr(images, "tolist") else images
        inputs = {"images": images}
        if style_weights is not None:
            inputs["style_weights"] = [float(w) for w in style_weights]
        return self.predict(inputs=inputs, signature_name="stylize_tensor")["outputs"]

    # Arbitrary-style (``nst-export --model_type=arbitrary``) models. ``alpha`` in [0, 1] is a
    # float for the whole batch or a list, one per content image.

    def stylize_with_style(self, contents, styles, alpha=1.0):
        """Encoded photos in the style of encoded paintings (one for all, or one per photo),
        through ``serving_default``; returns PNG bytes."""
        inputs = {
            "content_bytes": [_b64(data) for data in contents],
            "style_bytes": [_b64(data) for data in styles],
            "alpha": _alphas(alpha),
        }
        return [base64.b64decode(out["b64"]) for out in self.predict(inputs=inputs)["outputs"]]

    def style_vector(self, paintings):
        """Encoded paintings -> their style vectors (each a list of ``2C`` floats), through
        ``style_vector``: compute once, keep, and send with :meth:`stylize_with_vector`."""
        return self.predict(instances=[_b64(data) for data in paintings], signature_name="style_vector")["predictions"]

    def stylize_with_vector(self, contents, vectors, alpha=1.0):
        """Encoded photos in the style of one vector (a list of floats) or one vector per photo
        (a list of lists), through ``stylize_with_vector``; returns PNG bytes."""
        vectors = vectors.tolist() if hasattr(vectors, "tolist") else list(vectors)
        if vectors and not isinstance(vectors[0], (list, tuple)):
            vectors = [vectors]
        inputs = {
            "content_bytes": [_b64(data) for data in contents],
            "style_vector": [[float(x) for x in v] for v in vectors],
            "alpha": _alphas(alpha),
        }
        outputs = self.predict(inputs=inputs, signature_name="stylize_with_vector")["outputs"]
        return [base64.b64decode(out["b64"]) for out in outputs]

    def stylize_tensor_with_style(self, content, style, alpha=1.0):
        """Float NHWC content ``[B, H, W, 3]`` and style ``[1 or B, H', W', 3]`` in [0, 255] (nested
        lists or arrays) -> the stylized images, through ``stylize_tensor``."""
        inputs = {
            "content": content.tolist() if hasattr(content, "tolist") else content,
            "style": style.tolist() if hasattr(style, "tolist") else style,
            "alpha": _alphas(alpha),
        }
        return self.predict(inputs=inputs, signature_name="stylize_tensor")["outputs"]


class GrpcClient:
    """One model on TF Serving's gRPC port (``tensorflow-serving-api`` needed)."""

    def __init__(self, target="127.0.0.1:8500", model="default", version=None, timeout=120.0):
        try:
            # Optional extra: only gRPC users install it.
            # pylint: disable=import-outside-toplevel
            import grpc
            from tensorflow_serving.apis import predict_pb2
            from tensorflow_serving.apis import prediction_service_pb2_grpc
        except ImportError as exc:
            raise NSTError(f"gRPC client needs tensorflow-serving-api: pip install 'nst_tf[grpc]' ({exc})") from None
        self._grpc = grpc
        self._predict_pb2 = predict_pb2
        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model = model
        self.version = version
        self.timeout = timeout

    def predict(self, inputs, signature_name="serving_default"):
        """``{input name: array-like}`` -> ``{output name: numpy array}``."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel  # make_tensor_proto / make_ndarray

        request = self._predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = signature_name
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as exc:
            raise ServingError(exc.code().name, exc.details()) from None
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def stylize(self, images, style_weights=None):
        """Encoded JPEG/PNG images -> stylized PNG bytes, through ``serving_default``."""
        import numpy as np  # pylint: disable=import-outside-toplevel

        inputs = {"image_bytes": np.array(list(images), dtype=object)}
        if style_weights is not None:
            inputs["style_weights"] = np.asarray(style_weights, dtype=np.float32)
        return list(self.predict(inputs)["image_bytes"])

    def close(self):
        self.channel.close()
