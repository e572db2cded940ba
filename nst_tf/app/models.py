"""The trained nets under ``--models_dir`` that the app offers, and their stylizers, opened once."""

import collections
import dataclasses
import json
import os
import threading
from typing import Optional
from typing import Tuple

from nst_tf import inference
from nst_tf.errors import NSTError
from nst_tf.training import base

KINDS = ("fast", "multistyle", "arbitrary", "cyclegan")

# The recipes that make each kind, for a models_dir without any.
TRAIN_HINT = (
    "`nst-train-fast --flagfile=configs/fast_cpu.flags`, "
    "`nst-train-multistyle --flagfile=configs/multistyle_monet_vangogh.flags`, "
    "`nst-train-arbitrary --flagfile=configs/arbitrary_cpu.flags` or "
    "`nst-train-cyclegan --flagfile=configs/cyclegan_quick.flags`"
)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One net: ``name`` is its folder relative to the models dir; ``directions`` are a CycleGAN's generators."""

    name: str
    path: str
    kind: str
    exported: bool = False
    style_names: Tuple[str, ...] = ()
    directions: Tuple[str, ...] = ()

    @property
    def label(self):
        return f"{self.name} ({self.kind}{', SavedModel' if self.exported else ''})"


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _entry(root, folder):
    """The :class:`ModelEntry` of ``folder``, or None if it holds no net the app can run.

    An exported arbitrary-style net is left out: its graph takes the paintings per request
    through nst-serve, while the app drives arbitrary-style nets from their training dir.
    """
    name = os.path.relpath(folder, root)
    saved = inference.saved_model_dir(folder)
    if saved:
        info = _read_json(os.path.join(saved, inference.EXPORT_INFO)) or {}
        kind = info.get("model_type")
        if kind not in ("fast", "multistyle", "cyclegan"):
            return None
        directions = (info.get("direction", "a2b"),) if kind == "cyclegan" else ()
        return ModelEntry(name, folder, kind, True, tuple(info.get("style_names", ())), directions)
    description = _read_json(os.path.join(folder, base.MODEL_CONFIG))
    if description is None or description.get("method") not in KINDS:
        return None
    kind = description["method"]
    generators = sorted(n[len("generator_") :] for n in description.get("models", {}) if n.startswith("generator_"))
    return ModelEntry(
        name,
        folder,
        kind,
        False,
        tuple(description.get("style_names", ())),
        tuple(generators) if kind == "cyclegan" else (),
    )


def find_models(models_dir):
    """Every net under ``models_dir`` (searched recursively, a net's own folder not entered), sorted by name.

    An absent folder holds none.
    """
    found = []
    for folder, subdirs, _ in os.walk(models_dir):
        subdirs.sort()
        entry = _entry(models_dir, folder)
        if entry is not None:
            found.append(entry)
            subdirs.clear()
        elif inference.saved_model_dir(folder):
            subdirs.clear()
    return sorted(found, key=lambda e: e.name)


class StylizerCache:
    """Opened :class:`~nst_tf.inference.Stylizer` objects by ``(path, direction)``, the ``size`` last used.

    Loading a net costs far more than one forward pass; with the cache, a second request
    of the same net costs only the pass.
    """

    def __init__(self, size=4):
        self.size = size
        self._opened = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, entry: ModelEntry, direction: Optional[str] = None):
        if not os.path.isdir(entry.path):
            raise NSTError(f"model {entry.name}: {entry.path} is gone (restart the app to list the nets again)")
        key = (entry.path, direction)
        with self._lock:
            if key in self._opened:
                self._opened.move_to_end(key)
                return self._opened[key]
        stylizer = inference.Stylizer(entry.path, direction=direction)
        with self._lock:
            self._opened[key] = stylizer
            while len(self._opened) > self.size:
                self._opened.popitem(last=False)
        return stylizer
