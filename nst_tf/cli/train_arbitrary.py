"""nst-train-arbitrary: train AdaIN (Huang & Belongie 2017), one decoder for any painting.

    nst-train-arbitrary --flagfile=configs/arbitrary_paper.flags
    nst-train-arbitrary --flagfile=configs/arbitrary_cpu.flags

The photos come from ``--content_dir`` or tfds ``--tfds_name`` (coco/2017); the paintings
from ``--style_dir`` folders, searched recursively, without the ``--style_exclude`` ones.
Rerunning with the same ``--output_dir`` resumes from its latest checkpoint; Ctrl-C stops
after the current step and saves. The flags are the fields of
:class:`nst_tf.training.arbitrary.ArbitraryConfig`. Stylize with the result:
``nst-stylize --model=RUN --content=... --style=...``.
"""

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf.cli import training
from nst_tf.training import arbitrary

FLAGS = flags.FLAGS
config.define_flags(
    arbitrary.ArbitraryConfig,
    help_overrides={"tfds_name": "tfds dataset of content photos (when no --content_dir)."},
)

main = training.train_main(lambda: config.from_flags(arbitrary.ArbitraryConfig, FLAGS), arbitrary.train)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
