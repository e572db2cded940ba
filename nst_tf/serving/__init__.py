"""Serving our exported SavedModels: an embedded TF Serving-compatible endpoint and clients.

``nst_tf.serving.client`` imports no TensorFlow, so clients stay light; the
server is loaded only when one of its names is used.
"""

import importlib

_LAZY = {
    "ModelServer": "nst_tf.serving.server",
    "ServerConfig": "nst_tf.serving.server",
    "RestClient": "nst_tf.serving.client",
    "GrpcClient": "nst_tf.serving.client",
    "ServingError": "nst_tf.serving.client",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'nst_tf.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
