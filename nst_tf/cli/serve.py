"""nst-serve: TF Serving's REST API for our exported models, without docker.

    nst-serve --model_base_path=export/models --port=8501

serves every ``<name>/<version>/`` SavedModel under ``--model_base_path`` at
``http://127.0.0.1:8501/v1/models/<name>``, and picks up versions that
``nst-export`` writes later. The flags are the fields of
:class:`nst_tf.serving.server.ServerConfig`. See :mod:`nst_tf.serving.server`.
"""

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf.errors import NSTError
from nst_tf.serving.server import ModelServer
from nst_tf.serving.server import ServerConfig

MIB = 1024 * 1024

FLAGS = flags.FLAGS
config.define_flags(ServerConfig, exclude=("max_request_bytes",))
flags.DEFINE_integer(
    "max_request_mb",
    ServerConfig.max_request_bytes // MIB,
    "Largest request body accepted, in MiB (bigger: HTTP 413).",
    lower_bound=1,
)


def main(argv):
    del argv
    options = config.from_flags(
        ServerConfig, FLAGS, exclude=("max_request_bytes",), max_request_bytes=FLAGS.max_request_mb * MIB
    )
    try:
        server = ModelServer(options)
    except FileNotFoundError as exc:
        raise NSTError(f"--model_base_path: {exc}") from None
    except OSError as exc:
        raise NSTError(f"--port: cannot listen on {options.host}:{options.port} ({exc.strerror})") from None
    names = server.repository.names()
    cli.result(
        f"serving {len(names)} model(s) ({', '.join(names) or 'none yet'}) "
        f"from {options.model_base_path} at {server.url}"
    )
    try:
        server.serve_forever()
    finally:
        server.shutdown()


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
