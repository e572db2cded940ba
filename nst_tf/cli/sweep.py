"""nst-sweep: a labelled contact sheet of Gatys results over a grid of two settings.

Recreates Gatys et al. 2016, Fig. 3 (style layers down, alpha/beta across):

    nst-sweep --content=photo.jpg --style=painting.jpg --output=fig3.png \\
        --rows="style_layers:0|0,2|0,2,4|0,2,4,8|0,2,4,8,12" \\
        --cols="alpha_beta:1e-5|1e-4|1e-3|1e-2"

``--rows`` and ``--cols`` each take ``FIELD:VALUE|VALUE|...`` (see
:mod:`nst_tf.sweep`). Every other ``nst-stylize`` flag sets the base
configuration of all cells. The sheet is written atomically once every cell
is done.
"""

import time

import keras
from absl import flags

from nst_tf import cli
from nst_tf import images
from nst_tf import sweep
from nst_tf.cli import stylize  # its flags (nst-stylize's) define the base config
from nst_tf.errors import NSTError

flags.DEFINE_string("rows", None, "Row axis: FIELD:VALUE|VALUE|... (e.g. 'style_layers:0|0,2|0,2,4').")
flags.DEFINE_string("cols", None, "Column axis: FIELD:VALUE|VALUE|... (e.g. 'alpha_beta:1e-4|1e-3|1e-2').")
flags.DEFINE_integer(
    "cell_size", None, "Longest side of each cell on the sheet (default: --image_size).", lower_bound=16
)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.content:
        raise NSTError("--content: required")
    if not FLAGS.style:
        raise NSTError("--style: required")
    if FLAGS.model:
        raise NSTError("--model: nst-sweep runs the optimisation method only")
    for name in ("checkpoint_every", "resume", "log_dir"):
        if FLAGS[name].present:
            raise NSTError(f"--{name}: not supported by nst-sweep")
    output = FLAGS.output or "sweep.png"
    stylize.check_output(output)
    rows = sweep.parse_axis(FLAGS.rows, "--rows")
    cols = sweep.parse_axis(FLAGS.cols, "--cols")
    sweep.check_axes(rows, cols)
    base = stylize.config_from_flags(output)
    keras.utils.set_random_seed(base.seed)
    start = time.monotonic()
    sheet = sweep.sweep(FLAGS.content, FLAGS.style, base, rows, cols, progress=True, cell_size=FLAGS.cell_size)
    images.save_image(output, sheet)
    cli.result(
        f"{output} {len(rows.values)}x{len(cols.values)} cells "
        f"{sheet.shape[1]}x{sheet.shape[0]} {time.monotonic() - start:.1f}s"
    )


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
