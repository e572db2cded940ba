"""``nst-app``: a web app for stylizing, one tab per method, built on Gradio (the ``app`` extra).

    pip install 'nst_tf[app]'
    nst-app --models_dir=runs        # http://127.0.0.1:7860

* **Gatys**: a photo and one or two paintings, optimised live: a preview image every
  few steps with the loss, a cancel button that stops within one step, the result as PNG.
* **Trained nets**: the fast, multi-style, arbitrary-style and CycleGAN nets under
  ``--models_dir`` (training output dirs and nst-export SavedModels), one forward pass each.
* **Compare**: one photo through several methods side by side, with nst-eval's metrics.

The app only calls the library: :func:`nst_tf.gatys.stylize` (its ``on_step`` and
``should_stop`` hooks), :mod:`nst_tf.inference`'s stylizers and
:func:`nst_tf.evaluation.evaluate`. :mod:`.jobs` holds that logic without Gradio, so it is
tested on its own; :mod:`.models` lists and opens the nets; :mod:`.ui` is the page.
"""

import dataclasses
import os
from typing import Optional

from nst_tf import features
from nst_tf.config import check_fields
from nst_tf.config import option
from nst_tf.errors import NSTError


def default_gatys_concurrency():
    """One Gatys job per two cores: a job's convolutions already use two threads well."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclasses.dataclass
class AppConfig:
    """Every setting of ``nst-app``; each field is the flag of the same name."""

    host: str = option("127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
    port: int = option(7860, "Port to listen on.", min=1, max=65535)
    models_dir: str = option("runs", "Folder searched for training output dirs and exported SavedModels.")
    weights: Optional[str] = option(
        "imagenet",
        "Gatys feature weights: imagenet (Keras cache; offline: HED's VGG16 from the offline extra), "
        "a Keras no-top .weights.h5 file, or none (random, for tests).",
    )
    feature_extractor: str = option(
        "auto",
        "Gatys feature network; auto: vgg19, or what the --weights file holds.",
        choices=("auto", *features.EXTRACTORS),
    )
    max_side: int = option(1024, "Uploads larger than this are shrunk to this longest side.", min=32)
    max_megapixels: float = option(
        40.0, "Uploads with more pixels than this are refused, from their header, before decoding."
    )
    gatys_concurrency: Optional[int] = option(
        None, "Gatys jobs running at once; more wait in the queue (default: one per two cores).", min=1
    )

    def __post_init__(self):
        check_fields(self)
        if not self.max_megapixels > 0:
            raise NSTError(f"--max_megapixels: must be > 0, got {self.max_megapixels}")
        if self.gatys_concurrency is None:
            self.gatys_concurrency = default_gatys_concurrency()
        if self.gatys_concurrency < 1:
            raise NSTError(f"--gatys_concurrency: must be >= 1, got {self.gatys_concurrency}")
