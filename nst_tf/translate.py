"""nst-translate: translate images with a trained CycleGAN generator, at full size.

    nst-translate --model=runs/monet2photo --direction=b2a --input=photos/ --output=out/

``--model`` is a ``nst-train-cyclegan`` output dir (or a SavedModel nst-export
wrote for that direction). The generator is fully convolutional, so images keep
their size: odd sizes are reflection-padded to a multiple of 4 inside the model
and cropped back. Every input is read before anything is written; a folder is
processed in batches of same-sized images; each output is written atomically as
``<output>/<input name>.png`` (or ``--format=jpg``). The runner is
:func:`nst_tf.inference.translate`.
"""

from nst_tf import cli  # first: quiets TensorFlow's start-up logging

import dataclasses

from absl import flags

from nst_tf import inference

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Training output dir of nst-train-cyclegan, or a SavedModel nst-export "
                    "wrote from one (for the same --direction).")
flags.DEFINE_enum("direction", "a2b", ["a2b", "b2a"], "a2b uses generator_a2b (A -> B), b2a the inverse.")
flags.DEFINE_string("input", None, "An image file or a folder of images (searched recursively).")
flags.DEFINE_string("output", None, "Output folder.")
flags.DEFINE_integer("batch_size", 4, "Images per forward pass (same-sized images are batched).", lower_bound=1)
flags.DEFINE_integer("max_side", 0, "Resize so the longest side is at most this first (0: full size).", lower_bound=0)
flags.DEFINE_enum("format", "png", ["png", "jpg"], "Output format.")
for _name in ("model", "input", "output"):
    flags.mark_flag_as_required(_name)


def main(argv):
    del argv
    fields = dataclasses.fields(inference.TranslateConfig)
    config = inference.TranslateConfig(**{f.name: getattr(FLAGS, f.name) for f in fields})
    written = inference.translate(config)
    cli.result(f"translated {len(written)} image(s) {config.direction} -> {config.output}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
