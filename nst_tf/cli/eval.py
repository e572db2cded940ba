"""nst-eval: measure stylized images against their photo and painting.

    nst-eval --output=out/ --content=photos/ --style=starry_night.jpg --json=metrics.json
    nst-eval --manifest=pairs.csv --weights=vgg16_notop.weights.h5 --feature_extractor=vgg16

``--output``, ``--content``, ``--style`` and ``--reference`` are each an image
or a folder; folders are matched to the outputs by relative path, then by stem
(:func:`nst_tf.evaluation.match_files`). ``--manifest`` is a CSV with columns
output, content, style[, reference] instead. A table of the main metrics goes
to stdout; ``--json`` and ``--csv`` hold every metric, and ``--sheet`` is a
PNG or JPEG contact sheet of photo | painting | output [| reference] with each
row's main metrics, all written atomically once all images are measured. With two outputs or more, the KID proxy of the
outputs against the photos and against the paintings follows the table, for
each with two images or more. The other flags are the fields of
:class:`nst_tf.evaluation.EvalConfig`.
"""

import csv
import dataclasses
import io
import json
import os

import numpy as np
from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf import evaluation
from nst_tf import fileio
from nst_tf import images
from nst_tf.errors import NSTError

flags.DEFINE_string("output", None, "Stylized image, or a folder of them.")
flags.DEFINE_string("content", None, "Content photo, or a folder of them matched to the outputs.")
flags.DEFINE_string("style", None, "Painting, or a folder of them matched to the outputs.")
flags.DEFINE_string(
    "reference", None, "Pseudo-ground truth (another method's output), or a folder of them, for MSE and SSIM."
)
flags.DEFINE_string("manifest", None, "CSV with columns output,content,style[,reference], instead of the four above.")
flags.DEFINE_string("json", None, "Write every metric of every image to this JSON file.")
flags.DEFINE_string("csv", None, "Write every metric of every image to this CSV file, one row per image.")
flags.DEFINE_string("sheet", None, "Write a contact sheet (.png or .jpg), one labelled row per image.")
flags.DEFINE_integer("sheet_cell", 192, "Side of each picture of --sheet, in pixels.", lower_bound=32)
config.define_flags(evaluation.EvalConfig)
FLAGS = flags.FLAGS

# The table's columns: the ratios and scores that compare across pairs.
TABLE = evaluation.SUMMARY_METRICS + ("reference_mse", "reference_ssim")


def _triples():
    given = [name for name in ("output", "content", "style", "reference") if FLAGS[name].value]
    if FLAGS.manifest:
        if given:
            raise NSTError(f"--manifest: cannot be combined with --{given[0]}")
        return evaluation.read_manifest(FLAGS.manifest)
    for name in ("output", "content", "style"):
        if not FLAGS[name].value:
            raise NSTError(f"--{name}: required (or give --manifest)")
    return evaluation.match_files(FLAGS.output, FLAGS.content, FLAGS.style, FLAGS.reference)


def table(results):
    """The fixed-width table of :data:`TABLE` columns, one row per image and a median row."""
    columns = [c for c in TABLE if any(c in metrics for _, metrics in results)]
    rows = [[triple.name] + [metrics.get(c) for c in columns] for triple, metrics in results]
    if len(results) > 1:
        rows.append(["median"] + [float(np.nanmedian([m.get(c, np.nan) for _, m in results])) for c in columns])
    cells = [["image"] + columns] + [[r[0]] + ["" if v is None else f"{v:.4g}" for v in r[1:]] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in cells
    )


def _records(results):
    return [{**dataclasses.asdict(triple), "metrics": metrics} for triple, metrics in results]


def _csv_text(results):
    names = list(dict.fromkeys(name for _, metrics in results for name in metrics))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(list(evaluation.MANIFEST_COLUMNS) + names)
    for triple, metrics in results:
        files = [getattr(triple, c) or "" for c in evaluation.MANIFEST_COLUMNS]
        writer.writerow(files + [repr(metrics[n]) if n in metrics else "" for n in names])
    return text.getvalue()


def main(argv):
    del argv
    options = config.from_flags(evaluation.EvalConfig, FLAGS)
    if FLAGS.sheet and os.path.splitext(FLAGS.sheet)[1].lower() not in images.SAVE_FORMATS:
        raise NSTError(f"--sheet: {FLAGS.sheet}: use a .png or .jpg file name")
    triples = _triples()
    # Before measuring anything: the metric files can be written, over none of the images.
    inputs = [getattr(t, c) for t in triples for c in evaluation.MANIFEST_COLUMNS if getattr(t, c)]
    inputs += [FLAGS.manifest] if FLAGS.manifest else []
    for flag in ("json", "csv", "sheet"):
        if FLAGS[flag].value:
            fileio.check_writable(FLAGS[flag].value, f"--{flag}")
            fileio.refuse_inputs([FLAGS[flag].value], inputs, f"--{flag}")
    results, sets = evaluation.evaluate_files(triples, options, progress=True)
    print(table(results))
    for name, value in sets.items():
        print(f"{name} (proxy on pooled {evaluation.kid_layer(options)} features): {value:.4g}")
    written = []
    if FLAGS.json:
        document = {"config": dataclasses.asdict(options), "results": _records(results), "sets": sets}
        fileio.atomic_write_text(FLAGS.json, json.dumps(document, indent=2) + "\n")
        written.append(FLAGS.json)
    if FLAGS.csv:
        fileio.atomic_write_text(FLAGS.csv, _csv_text(results))
        written.append(FLAGS.csv)
    if FLAGS.sheet:
        images.save_image(FLAGS.sheet, evaluation.contact_sheet(results, FLAGS.sheet_cell))
        written.append(FLAGS.sheet)
    cli.result(f"evaluated {len(results)} image(s)" + (f" -> {', '.join(written)}" if written else ""))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
