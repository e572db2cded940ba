"""Atomic file and directory writes: an interrupted run never leaves a broken output.

The temporary file or folder is created with mode 0666 / 0777 and the kernel applies the
umask, so results get the same modes as a plain ``open`` or ``mkdir``. ``tempfile``'s
0600 files and 0700 folders could not be read by other users (a TF Serving container, a
web server).
"""

import contextlib
import os
import secrets
import shutil


def _temporary_path(folder, name):
    """A fresh hidden path beside the final one, so the rename stays on one file system."""
    return os.path.join(folder, f".tmp-{secrets.token_hex(8)}-{name}")


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temporary path beside ``path`` that replaces it only if the block succeeds.

    For writers that take a file name rather than bytes (Keras ``save_weights``); the
    temporary name ends with the final one, so suffix checks such as ``.weights.h5`` pass.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _temporary_path(folder, os.path.basename(path))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_file(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a temporary directory that becomes ``path`` only if the block succeeds.

    ``path`` must not exist yet (a SavedModel version directory, for example).
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = _temporary_path(parent, os.path.basename(path))
    os.mkdir(tmp)
    try:
        yield tmp
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
