"""nst-serve: TF Serving's REST API for our exported models, without docker.

    nst-serve --model_base_path=export/models --port=8501

serves every ``<name>/<version>/`` SavedModel under ``--model_base_path`` at
``http://127.0.0.1:8501/v1/models/<name>``, and picks up versions that
``nst-export`` writes later. See :mod:`nst_tf.serving.server`.
"""

from nst_tf import cli  # First: quiets TensorFlow start-up.

from absl import flags

from nst_tf.errors import NSTError
from nst_tf.serving.server import ModelServer, ServerConfig


def _define_flags():
    defaults = ServerConfig()
    flags.DEFINE_string("model_base_path", defaults.model_base_path,
                        "Folder of models: <name>/<version>/saved_model.pb, as nst-export writes.")
    flags.DEFINE_string("host", defaults.host,
                        "Address to bind. The default answers this machine only; 0.0.0.0 exposes it.")
    flags.DEFINE_integer("port", defaults.port, "REST port (TF Serving's default is 8501; 0: any free port).",
                         lower_bound=0, upper_bound=65535)
    flags.DEFINE_float("file_system_poll_wait_seconds", defaults.poll_seconds,
                       "How often to look for new or removed versions.", lower_bound=0.05)
    flags.DEFINE_integer("num_versions", defaults.num_versions,
                         "Newest versions of each model kept loaded (TF Serving: latest { num_versions }).",
                         lower_bound=1)
    flags.DEFINE_integer("max_request_mb", defaults.max_request_bytes // (1024 * 1024),
                         "Largest request body accepted, in MiB (bigger: HTTP 413).", lower_bound=1)
    flags.DEFINE_integer("max_image_pixels", defaults.max_image_pixels,
                         "Largest image accepted, width x height (bigger: HTTP 413).", lower_bound=1)
    flags.DEFINE_integer("max_batch_size", defaults.max_batch_size,
                         "Most images (instances) in one request.", lower_bound=1)
    flags.DEFINE_integer("max_concurrent_predictions", defaults.max_concurrent_predictions,
                         "Model runs at once; further requests wait.", lower_bound=1)


_define_flags()
FLAGS = flags.FLAGS


def config_from_flags():
    return ServerConfig(
        model_base_path=FLAGS.model_base_path,
        host=FLAGS.host,
        port=FLAGS.port,
        poll_seconds=FLAGS.file_system_poll_wait_seconds,
        num_versions=FLAGS.num_versions,
        max_request_bytes=FLAGS.max_request_mb * 1024 * 1024,
        max_image_pixels=FLAGS.max_image_pixels,
        max_batch_size=FLAGS.max_batch_size,
        max_concurrent_predictions=FLAGS.max_concurrent_predictions,
    )


def main(argv):
    del argv
    config = config_from_flags()
    try:
        server = ModelServer(config)
    except FileNotFoundError as exc:
        raise NSTError(f"--model_base_path: {exc}") from None
    except OSError as exc:
        raise NSTError(f"--port: cannot listen on {config.host}:{config.port} ({exc.strerror})") from None
    names = server.repository.names()
    cli.result(f"serving {len(names)} model(s) ({', '.join(names) or 'none yet'}) "
               f"from {config.model_base_path} at {server.url}")
    try:
        server.serve_forever()
    finally:
        server.shutdown()


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
