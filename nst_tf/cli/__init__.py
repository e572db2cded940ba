"""The command-line tools: one absl main per module, and their shared plumbing.

Each command is a console script and a module, e.g. ``nst-stylize`` is
``python -m nst_tf.cli.stylize`` (or ``python nst_tf/cli/stylize.py``):
``stylize``, ``sweep``, ``train_fast``, ``train_multistyle``, ``train_cyclegan``,
``translate``, ``export``, ``serve``, ``eval``, ``app`` and ``demo``. Their flags are generated
from the fields of the library's config dataclasses (:mod:`nst_tf.config`).

Importing this package imports TensorFlow with its C++ start-up logging
silenced, unless ``--verbosity``/``-v`` asks for more. Python runs it before
any command module (``python -m nst_tf.cli.<command>`` or a console script);
a command run by its path (``python nst_tf/cli/train_cyclegan.py``) imports it
before anything that imports TensorFlow.

A command's ``main`` parses flags into a config and calls the library; it
raises :class:`~nst_tf.errors.NSTError` for bad input. :func:`run` turns that
into one line on stderr and exit status 1, with nothing half-written.
"""

import os
import sys
import warnings

# Not bound as ``app``: importing the command module nst_tf.cli.app sets that name on this package.
from absl import app as absl_app
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
        import tensorflow  # noqa: F401  (imported for its side effect, with stderr muted)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# Commands import this package before anything that imports TensorFlow, so the
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
    # Keras writes "Downloading data from URL" on stdout, a second line beside the result
    # line (and the only output of a failed download); through absl logging it shows
    # with --verbosity=1.
    import keras  # pylint: disable=import-outside-toplevel

    keras.config.disable_interactive_logging()


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

    absl_app.run(wrapped, flags_parser=_parse_flags_or_exit)


def _parse_flags_or_exit(argv):
    """absl's flag parsing, with a bad flag reported on one line like any other error."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as exc:
        error(str(exc))
