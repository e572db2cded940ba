"""Shared plumbing for the absl command-line tools.

Every script starts with ``from nst_tf import cli`` *before* importing
TensorFlow: importing this module silences TensorFlow's C++ start-up logging
unless ``--verbosity``/``-v`` asks for more, because that logging is configured
from the environment when TensorFlow loads and cannot be changed afterwards.

A script's ``main`` parses flags into a config and calls the library; it raises
:class:`~nst_tf.errors.NSTError` for bad input. :func:`run` turns that into one
line on stderr and exit status 1, with nothing half-written.
"""

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


def _launched_as_tool():
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.startswith("nst_tf."):
        return True
    return os.path.basename(sys.argv[0]).startswith("nst-")


# TensorFlow reads TF_CPP_MIN_LOG_LEVEL from the environment the process was
# started with, so setting os.environ here is too late: a tool re-executes
# itself once with the variable set, before TensorFlow is imported.
if (
    "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    and _requested_verbosity(sys.argv) < 1
    and "tensorflow" not in sys.modules
    and _launched_as_tool()
):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _quiet_python_side():
    """Mute Python-side TF/Keras chatter unless --verbosity >= 1."""
    if logging.get_verbosity() >= 1:
        return
    warnings.filterwarnings("ignore")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tf.get_logger().setLevel("ERROR")
    try:
        tf.autograph.set_verbosity(0)
    except AttributeError:
        pass


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

    app.run(wrapped)


def flags_as_text():
    """The parsed flags of this program, in ``--flagfile`` format."""
    return flags.FLAGS.flags_into_string()
