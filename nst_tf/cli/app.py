"""nst-app: the web app for stylizing (Gatys live, trained nets, comparisons), on 127.0.0.1.

    pip install 'nst_tf[app]'
    nst-app --models_dir=runs --port=7860

The flags are the fields of :class:`nst_tf.app.AppConfig`. See :mod:`nst_tf.app`.
"""

import sys

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf.app import AppConfig
from nst_tf.errors import NSTError

FLAGS = flags.FLAGS
config.define_flags(AppConfig)


def main(argv):
    del argv
    options = config.from_flags(AppConfig, FLAGS)
    try:
        from nst_tf.app import ui  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise NSTError(f"{exc.name} is not installed: pip install 'nst_tf[app]'") from None
    app = ui.App(options)
    sys.stderr.write(app.network.line + "\n")
    try:
        page = ui.launch(app, block=False)
    except OSError as exc:
        raise NSTError(f"--port: cannot listen on {options.host}:{options.port} ({exc})") from None
    cli.result(f"serving {len(app.models)} trained net(s) from {options.models_dir} at {page.local_url}")
    try:
        page.block_thread()
    finally:
        page.close()


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
