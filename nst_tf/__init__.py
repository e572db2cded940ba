"""nst_tf: neural style transfer for TensorFlow / Keras 3.

Four methods share one set of building blocks:

* Gatys et al. optimisation      -> :func:`nst_tf.stylize` / ``nst-stylize``
* Johnson et al. transform net    -> ``nst-train-fast``
* Dumoulin et al. multi-style net -> ``nst-train-multistyle``
* Zhu et al. CycleGAN             -> ``nst-train-cyclegan``

The command-line tools live in :mod:`nst_tf.cli`. Attributes are imported
lazily so that ``import nst_tf`` stays cheap and the tools can configure
TensorFlow's logging before it is imported.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "stylize": ("nst_tf.gatys", "stylize"),
    "GatysConfig": ("nst_tf.gatys", "GatysConfig"),
    "LossConfig": ("nst_tf.losses", "LossConfig"),
    "NSTError": ("nst_tf.errors", "NSTError"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'nst_tf' has no attribute {name!r}")
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
