"""The model repository of the embedded server: the SavedModel versions under a base folder.

``<base>/<name>/<version>/saved_model.pb`` is the layout ``nst-export`` writes and TF Serving
reads. :class:`ModelRepository` loads versions that appear (``nst-export`` renames a finished
directory into place, so a version is never seen half-written) and unloads the ones that leave
the ``num_versions`` newest, like TF Serving's ``latest`` version policy. A version that fails
to load is reported in its status and loaded again once its files change: a version copied in
place file by file (not renamed in, as ``nst-export`` does) is seen before it is complete.
"""

import dataclasses
import os
import threading
from http import HTTPStatus

import tensorflow as tf
from absl import logging
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

from nst_tf.serving.protocol import RequestError
from nst_tf.serving.protocol import format_model_status


@dataclasses.dataclass
class Servable:
    """One loaded version of one model."""

    name: str
    version: int
    path: str
    signatures: dict  # signature name -> ConcreteFunction
    signature_defs: dict  # TF Serving's JSON form of the SignatureDefMap
    _loaded: object = dataclasses.field(repr=False, default=None)  # keeps variables alive

    def input_specs(self, signature_name):
        """``{input name: tf.TensorSpec}`` of one signature."""
        return self.signatures[signature_name].structured_input_signature[1]


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


def files_signature(path):
    """Every file under ``path`` with its size and modification time: changes when any file does."""
    found = []
    for root, _, names in os.walk(path):
        for name in names:
            file = os.path.join(root, name)
            try:
                stat = os.stat(file)
            except OSError:  # removed meanwhile: the next poll sees the change
                continue
            found.append((os.path.relpath(file, path), stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def version_dirs(model_dir):
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
        # (name, version) -> (error message, files_signature when it failed); retried when they change
        self._failed = {}

    def poll(self):
        """Load new versions and unload stale ones; returns the number of changes."""
        try:
            names = sorted(
                e
                for e in os.listdir(self.base_path)
                if not e.startswith(".") and os.path.isdir(os.path.join(self.base_path, e))
            )
        except OSError:
            names = []
        wanted = {}
        for name in names:
            versions = [v for v in version_dirs(os.path.join(self.base_path, name)) if not self._still_failed(name, v)]
            wanted[name] = versions[: self.num_versions]
        changes = 0
        for name, versions in wanted.items():
            for version in versions:
                with self._lock:
                    if version in self._servables.get(name, {}):
                        continue
                path = os.path.join(self.base_path, name, str(version))
                # Taken before loading, so that files arriving during the attempt count as a change.
                files = files_signature(path)
                try:
                    servable = load_servable(name, version, path)
                except Exception as exc:  # pylint: disable=broad-except
                    # A broken export must not take the server down: report it in status.
                    logging.warning("cannot load %s: %s", path, exc)
                    message = str(exc).splitlines()[0] if str(exc) else repr(exc)
                    with self._lock:
                        self._failed[(name, version)] = (message, files)
                    changes += 1
                    continue
                logging.info("loaded model %s version %d", name, version)
                with self._lock:
                    self._failed.pop((name, version), None)
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

    def _still_failed(self, name, version):
        """Whether a version failed to load and its files are as they were then (else: retry it)."""
        failed = self._failed.get((name, version))
        return failed is not None and files_signature(os.path.join(self.base_path, name, str(version))) == failed[1]

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
                raise RequestError(HTTPStatus.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")
            return versions[version]

    def status(self, name, version=None):
        """TF Serving's ``GetModelStatus`` JSON (:func:`~nst_tf.serving.protocol.format_model_status`)."""
        with self._lock:
            states = {v: ("AVAILABLE", "OK", "") for v in self._servables.get(name, {})}
            for (failed_name, v), (message, _) in self._failed.items():
                if failed_name == name:
                    states[v] = ("END", "UNKNOWN", message)
        if version is not None:
            states = {v: s for v, s in states.items() if v == version}
        return format_model_status(name, version, states)
