"""Shared plumbing for the absl command-line tools.

Every script starts with ``from nst_tf import cli`` *before* importing
TensorFlow: importing this module imports TensorFlow with its C++ start-up
logging silenced, unless ``--verbosity``/``-v`` asks for more.

A script's ``main`` parses flags into a config and calls the library; it raises
:class:`~nst_tf.errors.NSTError` for bad input. :func:`run` turns that into one
line on stderr and exit status 1, with nothing half-written.
"""

import dataclasses
import os
import sys
import warnings

from absl import app
from absl import flags
from absl import logging

from nst_tf.errors import NSTError


def _requested_verbosity(argv):
    for i, arg in enumerate(argv):
        for name in ("--verbosity", "-v"):
            if arg.startswith(name + "="):
                return _as_int(arg.split("=", 1)[1])
            if arg == name and i + 1 < len(argv):
                return _as_int(argv[i + 1])
    return -1


def _as_int(text):
    try:
        return int(text)
    except ValueError:
        return -1


def _import_tensorflow_quietly():
    """Import TensorFlow with file descriptor 2 pointed at /dev/null.

    TF_CPP_MIN_LOG_LEVEL silences TensorFlow's C++ logging once it is set up,
    but TF 2.19+ writes a few lines at import time, before absl's logging is
    initialised, that no setting reaches (tensorflow/tensorflow#100442).
    """
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# Scripts import this module before anything that imports TensorFlow, so the
# quiet import below is the one that loads it.
if _requested_verbosity(sys.argv) < 1 and "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _import_tensorflow_quietly()


def _quiet_python_side():
    """Mute Python-side TF/Keras chatter unless --verbosity >= 1."""
    if logging.get_verbosity() >= 1:
        return
    # absl.app leaves Python logging at INFO, which lets TensorFlow's Python
    # INFO lines through; WARNING keeps the tools to their one result line.
    logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)


def error(message):
    """Print ``prog: error: message`` on stderr and exit with status 1."""
    prog = os.path.basename(sys.argv[0]) or "nst_tf"
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.exit(1)


def result(message):
    """Print the tool's one result line on stdout."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def run(main):
    """Run ``main(argv)`` as an absl app with the project's error handling."""

    def wrapped(argv):
        if len(argv) > 1:
            error(f"unexpected arguments: {' '.join(argv[1:])} (flags need --name=value)")
        _quiet_python_side()
        try:
            return main(argv)
        except NSTError as exc:
            error(str(exc))
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            sys.exit(130)

    app.run(wrapped, flags_parser=_parse_flags_or_exit)


def _parse_flags_or_exit(argv):
    """absl's flag parsing, with a bad flag reported on one line like any other error."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as exc:
        error(str(exc))


def dataclass_from_flags(cls, values, **overrides):
    """An instance of dataclass ``cls`` whose fields take the flags of the same name.

    ``values`` is absl's FLAGS (or any object with those attributes); fields
    without a flag keep their defaults, and ``overrides`` set fields whose flag
    needs parsing or is named differently.
    """
    kwargs = {f.name: getattr(values, f.name) for f in dataclasses.fields(cls) if _is_ours(values, f.name)}
    kwargs.update(overrides)
    return cls(**kwargs)


def _is_ours(values, name):
    """Whether ``values`` has a flag ``name`` that is not one of absl's own (``--log_dir``...)."""
    if not hasattr(values, name):
        return False
    if isinstance(values, flags.FlagValues):
        return not (values.find_module_defining_flag(name) or "").startswith("absl")
    return True


def weights_flag(value):
    """``--weights``: ``imagenet``, a weights file, or ``none``/``random`` for random weights."""
    return None if (value or "").lower() in ("", "none", "random") else value


def numbers_flag(name, values, cast=float):
    """A comma-separated list flag as a tuple of numbers, or None when it is empty."""
    if not values:
        return None
    try:
        return tuple(cast(v) for v in values)
    except ValueError:
        raise NSTError(f"--{name}: expected comma-separated numbers, got {','.join(values)!r}") from None
