"""Atomic file and directory writes: an interrupted run never leaves a broken output."""

import contextlib
import os
import shutil
import tempfile


def _default_mode(full):
    """``full`` (0o666 for files, 0o777 for folders) less the process umask: the mode
    ``open`` or ``mkdir`` would give. ``tempfile`` creates 0600 files and 0700 folders,
    which other users (a TF Serving container, a web server) could not read."""
    umask = os.umask(0)
    os.umask(umask)
    return full & ~umask


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _default_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(path) + "-")
    try:
        yield tmp
        os.chmod(tmp, _default_mode(0o777))
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
