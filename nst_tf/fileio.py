"""Output files: checked before any work, written atomically.

Every command checks its outputs first (:func:`check_writable`, :func:`refuse_inputs`), so
an output that cannot be written, or that would replace one of the inputs, fails the run
in one line before the work rather than after it.

Writes are atomic, so an interrupted run never leaves a broken output. The temporary file
or folder is created with mode 0666 / 0777 and the kernel applies the umask, so results
get the same modes as a plain ``open`` or ``mkdir``. ``tempfile``'s 0600 files and 0700
folders could not be read by other users (a TF Serving container, a web server).

A process killed with SIGKILL cannot remove its temporary, so the next start of the same
work calls :func:`remove_leftovers` on the folders it writes. :func:`atomic_directory`
holds an exclusive ``flock`` on its temporary folder while it writes, which the kernel
drops when the process dies: a folder whose lock can be taken is a leftover, one whose
lock cannot is still being written (another export into the same folder) and stays.
Temporary files are not locked (HDF5 takes its own ``flock`` on the file Keras writes,
which ours would block), so ``remove_leftovers`` removes them all: call it on folders
whose files only this run writes (a run's folder, a checkpoint folder).
"""

import contextlib
import fcntl
import os
import re
import secrets
import shutil

from nst_tf.errors import NSTError

# The names of our temporaries: ".tmp-" + 16 hex digits + "-" + the final name.
_TEMPORARY = re.compile(r"\.tmp-[0-9a-f]{16}-.+")


def check_writable(path, flag, folder=False):
    """Raise NSTError ``"<flag>: <path>: <reason>"`` unless ``path`` can be written; creates nothing.

    ``path`` is a file to write (``folder=False``) or a folder to write into, either
    of which may not exist yet: then its nearest existing ancestor must be a folder
    this process may create entries in (the missing ones are made on writing).
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path) and not folder:
        raise NSTError(f"{flag}: {path} is a folder, not a file")
    if os.path.exists(path) and not os.path.isdir(path) and folder:
        raise NSTError(f"{flag}: {path} is a file, not a folder")
    existing = path if folder else os.path.dirname(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NSTError(f"{flag}: {path}: {existing} is a file, not a folder")
    # W for the new entry (the atomic rename's temporary file, a subfolder), X to reach it.
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise NSTError(f"{flag}: {path}: {existing} is not writable")


def refuse_inputs(outputs, inputs, flag):
    """Raise NSTError if an output path of ``outputs`` is one of ``inputs`` (files or folders).

    Writing it would destroy the input: the run is refused before any work.
    """
    resolved = {os.path.realpath(p): p for p in inputs}
    identities = {}
    for p in inputs:
        with contextlib.suppress(OSError):
            stat = os.stat(p)
            identities[(stat.st_dev, stat.st_ino)] = p
    for output in outputs:
        match = resolved.get(os.path.realpath(output))
        if match is None and identities:
            with contextlib.suppress(OSError):
                stat = os.stat(output)
                match = identities.get((stat.st_dev, stat.st_ino))
        if match is not None:
            raise NSTError(f"{flag}: {output} is the input {match}; writing it would destroy the input")


def _temporary_path(folder, name):
    """A fresh hidden path beside the final one, so the rename stays on one file system."""
    return os.path.join(folder, f".tmp-{secrets.token_hex(8)}-{name}")


def _locked_directory(folder, name):
    """Create a temporary directory for ``name`` in ``folder`` and lock it; returns ``(path, fd)``.

    Closing ``fd`` releases the lock. A :func:`remove_leftovers` running between the mkdir
    and the lock may remove the new folder; then a new name is tried.
    """
    while True:
        tmp = _temporary_path(folder, name)
        os.mkdir(tmp)
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return tmp, fd
        os.close(fd)


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
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A failed write (a full disk, a folder gone read-only since the up-front check)
    raises NSTError ``"<path>: cannot write (<reason>)"`` and leaves nothing.
    """
    try:
        with atomic_file(path) as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as exc:
        raise NSTError(f"{path}: cannot write ({exc.strerror or exc})") from None


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
    tmp, lock = _locked_directory(parent, os.path.basename(path))
    try:
        yield tmp
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock)


def remove_leftovers(folder, pattern=None):
    """Remove the temporaries that killed writers left in ``folder``; returns the names removed.

    Only our own names go: this module's ``.tmp-<16 hex digits>-<name>`` files and folders,
    and entries whose whole name matches ``pattern`` (a regex of another writer's
    temporaries, such as TensorFlow's ``ckpt-<N>_temp`` checkpoint folders), and none that
    a live process holds locked (an :func:`atomic_directory` being written). A missing
    ``folder`` has nothing to remove.
    """
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in sorted(names):
        if not (_TEMPORARY.fullmatch(name) or (pattern and re.fullmatch(pattern, name))):
            continue
        if _remove_unless_locked(os.path.join(folder, name)):
            removed.append(name)
    return removed


def _remove_unless_locked(path):
    """Remove ``path`` unless a live writer holds its lock (see the module docstring).

    The lock is held while removing, so a writer that has just created ``path`` and waits
    for its lock finds it gone and starts again under a new name.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        fd = None  # a symlink (removed, its target left alone) or unreadable: no writer's
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return True
    finally:
        if fd is not None:
            os.close(fd)
