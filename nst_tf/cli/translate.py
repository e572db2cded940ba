"""nst-translate: translate images with a trained CycleGAN generator, at full size.

    nst-translate --model=runs/monet2photo --direction=b2a --input=photos/ --output=out/

The flags are the fields of :class:`nst_tf.inference.TranslateConfig`.
"""

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf import inference

FLAGS = flags.FLAGS
config.define_flags(inference.TranslateConfig)


def main(argv):
    del argv
    options = config.from_flags(inference.TranslateConfig, FLAGS)
    written = inference.translate(options)
    cli.result(f"translated {len(written)} image(s) {options.direction} -> {options.output}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
