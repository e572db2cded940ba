"""Picture quality of nst-stylize's Gatys settings against a plain reference, on real pairs.

A panel of (photo, painting) pairs from ``../shared/assets`` whose aspect
ratios differ (landscape photos with portrait, square and wide paintings, a
portrait crop with a landscape painting) is stylized at each ``--sizes``
longest side by three configurations:

* ``defaults``: ``nst-stylize``'s defaults (:class:`nst_tf.gatys.GatysConfig`);
* ``preview``: ``configs/gatys_preview.flags``;
* any ``*.flags`` path: that flagfile over ``nst-stylize``'s defaults (named by
  its stem), so a sweep of candidate settings runs under the same budgets;
* ``reference``: a plain loop in the style of the TensorFlow neural style
  transfer tutorial, written here and not in the product: Grams divided by
  H·W, ``1e-2 · mean_l mean((G_l − A_l)²) + mean((F − P)²) + 30e-4 · TV(x)``,
  Adam 0.02 (β1 0.99, ε 0.1), 300 steps from the photo, pixels clipped to
  [0, 1], on the same network and layers as the defaults (style
  block1_conv1..block5_conv1, content block4_conv2).

Every configuration runs on the same feature network (``--feature_extractor``,
``--weights``; the HED VGG16 stand-in by default, ImageNet weights where a user
has them), and each output is scored by ``nst_tf.evaluation`` against its photo
and painting on that network: the style ratio (Gram distance to the painting
over the photo's own, lower is more stylized), the content ratio (feature
distance to the photo over the painting's, lower keeps more of the photo),
SSIM of luminance and the noise ratio. The budgets are equal: the reference runs
first, and each other configuration is stopped once it has used the reference's
wall time on that pair (it keeps the image of its last step), or finishes sooner.
Seconds are reported as a ratio to the reference's on the same pair in the same
run, since this machine's speed drifts.

It prints one row per pair and configuration, the medians, and how many pairs
meet the target (style and content ratios no higher than the reference's, in no
more than its time), and writes one contact sheet per size into ``--out_dir``
(rows: pairs; columns: photo, painting, then each configuration). The sheets
hold the asset photos, which are not cleared for redistribution: keep them out
of the repository.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/quality.py --sizes=256 --pairs=4
"""

import dataclasses
import pathlib
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import ASSETS  # noqa: E402
from nst_tf import config as config_lib  # noqa: E402
from nst_tf import evaluation  # noqa: E402
from nst_tf import gatys  # noqa: E402
from nst_tf import images  # noqa: E402
from nst_tf import losses  # noqa: E402

flags.DEFINE_list("sizes", ["256", "512"], "Longest sides in pixels.")
flags.DEFINE_list(
    "configs",
    ["defaults", "preview", "reference"],
    "Configurations to compare: defaults, preview, reference, or paths of nst-stylize flagfiles.",
)
flags.DEFINE_integer("pairs", 0, "Use only the first N pairs of the panel (0: all).", lower_bound=0)
flags.DEFINE_list("only", [], "Use only these pairs of the panel, by name (e.g. louvre_lilies).")
flags.DEFINE_string("feature_extractor", "vgg16", "Feature network of every configuration and of the metrics.")
flags.DEFINE_string(
    "weights",
    str(ASSETS / "keras-models" / "vgg16_hed_bsds500_notop.weights.h5"),
    "Weights of --feature_extractor (imagenet, or a Keras no-top file).",
)
flags.DEFINE_string("out_dir", str(REPO / "build" / "quality"), "Where the contact sheets go.")
flags.DEFINE_integer("cell", 192, "Side of each picture in the contact sheets.")
FLAGS = flags.FLAGS

# (name, photo, painting, aspect of a centre crop of the photo or None). The photos are all
# landscape or square, so the last pair crops one to portrait for the reverse case.
PANEL = (
    ("cat_scream", "persian_cat", "the_scream", None),  # 1.78 landscape x 0.79 portrait
    ("chicago_udnie", "chicago", "udnie", None),  # 1.50 x square
    ("taj_wave", "taj_mahal", "great_wave", None),  # 1.44 x 1.81 wide
    ("sailboat_starry", "sailboat", "starry_night", None),  # square x 1.26
    ("cornell_cherry", "cornell", "flowering_cherry_hoitsu", None),  # 1.42 x 2.19 very wide
    ("stata_mondrian", "stata_center", "mondrian_composition", None),  # 1.51 x 1.09
    ("louvre_lilies", "louvre", "water_lilies", None),  # 1.33 x 1.52
    ("gate_portrait_kandinsky", "golden_gate", "composition_vii", 0.75),  # 0.75 portrait x 1.50
)

# The tutorial-style reference's constants, as the issue fixes them.
REFERENCE_STYLE_WEIGHT = 1e-2
REFERENCE_CONTENT_WEIGHT = 1.0
REFERENCE_TV_WEIGHT = 30e-4
REFERENCE_STEPS = 300


def load_pair(photo, painting, crop):
    content = images.load_image(str(ASSETS / "images" / "content" / f"{photo}.jpg"))
    if crop is not None:
        content = images.center_crop_to_aspect(content, crop)
    return content, images.load_image(str(ASSETS / "images" / "style" / f"{painting}.jpg"))


def reference_stylize(extractor, content, style, size):
    """The tutorial-style Adam loop (see the module docstring) at longest side ``size``."""
    content = images.resize_longest_side(content, size)
    style = images.resize_longest_side(style, size)
    content_layers, style_layers = ["block4_conv2"], [f"block{b}_conv1" for b in range(1, 6)]

    def gram(features):
        features = tf.cast(features, tf.float32)
        positions = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float32)
        return tf.einsum("bijc,bijd->bcd", features, features) / positions

    style_targets = {name: gram(f) for name, f in extractor(style[None]).items() if name in style_layers}
    content_targets = {name: f for name, f in extractor(content[None]).items() if name in content_layers}
    image = tf.Variable(content[None])
    optimizer = keras.optimizers.Adam(learning_rate=0.02, beta_1=0.99, epsilon=1e-1)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs = extractor(image)
            style_loss = tf.add_n(
                [tf.reduce_mean(tf.square(gram(outputs[n]) - style_targets[n])) for n in style_layers]
            ) / len(style_layers)
            content_loss = tf.add_n(
                [tf.reduce_mean(tf.square(outputs[n] - content_targets[n])) for n in content_layers]
            ) / len(content_layers)
            loss = REFERENCE_STYLE_WEIGHT * style_loss + REFERENCE_CONTENT_WEIGHT * content_loss
            loss += REFERENCE_TV_WEIGHT * tf.reduce_sum(tf.image.total_variation(image))
        optimizer.apply_gradients([(tape.gradient(loss, image), image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))

    for _ in range(REFERENCE_STEPS):
        step()
    return image.numpy()[0]


def stylize_within(content, style, config, extractor, budget):
    """``(image, stopped)``: ``gatys.stylize`` stopped once ``budget`` seconds have passed (None:
    no limit) with the image of its last step, the equal wall-time budgets of the issue's benchmark.
    A stopped run counts as within the budget: it overran it by at most the step in progress."""
    if budget is None:
        return gatys.stylize(content, style, config, extractor=extractor), False
    deadline = time.perf_counter() + budget
    last = {}

    def keep(done, total, image, losses):
        last["image"] = image

    config = dataclasses.replace(config, log_every=1)
    try:
        image = gatys.stylize(
            content,
            style,
            config,
            extractor=extractor,
            on_step=keep,
            should_stop=lambda: time.perf_counter() > deadline,
        )
        return image, False
    except gatys.Cancelled:
        return last["image"], True


def gatys_configs(names, size):
    """The product's configurations named in ``names`` (``defaults``, ``preview`` or a flagfile
    path), on this run's network, at longest side ``size``; keyed by their column names."""
    network = {"feature_extractor": FLAGS.feature_extractor, "weights": FLAGS.weights}
    files = {"preview": str(REPO / "configs" / "gatys_preview.flags")}
    configs = {}
    for name in names:
        if name == "defaults":
            config = gatys.GatysConfig()
        else:
            config = config_lib.from_flagfile(gatys.GatysConfig, files.get(name, name))
        configs[column_name(name)] = dataclasses.replace(
            config, image_size=size, loss=dataclasses.replace(config.loss, **network)
        )
    return configs


def column_name(name):
    return pathlib.Path(name).stem if name.endswith(".flags") else name


def main(argv):
    del argv
    if not (ASSETS / "images").is_dir():
        raise SystemExit(f"bench/quality.py: {ASSETS} not found (set NST_ASSETS)")
    unknown = set(FLAGS.only) - {pair[0] for pair in PANEL}
    if unknown:
        raise SystemExit(f"bench/quality.py: --only: no pair named {', '.join(sorted(unknown))}")
    panel = [pair for pair in PANEL if not FLAGS.only or pair[0] in FLAGS.only][: FLAGS.pairs or None]
    eval_config = evaluation.EvalConfig(feature_extractor=FLAGS.feature_extractor, weights=FLAGS.weights, max_side=0)
    # One network for everything: the defaults' layers are the metrics' and the reference's.
    extractor = losses.build_extractor(eval_config.loss_config())
    out_dir = pathlib.Path(FLAGS.out_dir)
    names = [column_name(n) for n in FLAGS.configs]
    width = max(9, *map(len, names))
    columns = ("style", "content", "ssim", "noise", "time")
    print(f"{'px':>4s} {'pair':24s} {'config':{width}s} " + " ".join(f"{c:>8s}" for c in columns), flush=True)
    for size in (int(s) for s in FLAGS.sizes):
        sheet_rows, figures = [], {name: [] for name in names}
        in_time = {name: [] for name in names}
        configs = gatys_configs([n for n in FLAGS.configs if n != "reference"], size)
        # Each configuration on its own network (a flagfile may change the pooling, the layers or the
        # precision), built once per size; the metrics keep theirs.
        networks = {name: gatys.build_extractor(config) for name, config in configs.items()}
        for pair_name, photo, painting, crop in panel:
            content, style = load_pair(photo, painting, crop)
            outputs, seconds, stopped, budget = {}, {}, {}, None
            # The reference runs first: its time is every other configuration's budget.
            for name in sorted(names, key=lambda n: n != "reference"):
                start = time.perf_counter()
                if name == "reference":
                    outputs[name] = reference_stylize(extractor, content, style, size)
                    budget = time.perf_counter() - start
                else:
                    outputs[name], stopped[name] = stylize_within(content, style, configs[name], networks[name], budget)
                seconds[name] = time.perf_counter() - start
            base_seconds = seconds.get("reference", seconds[names[0]])
            for name in names:
                metrics = evaluation.evaluate(outputs[name], content, style, config=eval_config, extractor=extractor)
                row = (
                    metrics["style_gram_ratio"],
                    metrics["content_ratio"],
                    metrics["ssim_luminance"],
                    metrics["noise_ratio"],
                    seconds[name] / base_seconds,
                )
                figures[name].append(row)
                in_time[name].append(seconds[name] <= base_seconds or stopped.get(name, False))
                mark = " (stopped at the budget)" if stopped.get(name) else ""
                print(
                    f"{size:4d} {pair_name:24s} {name:{width}s} " + " ".join(f"{v:8.3g}" for v in row) + mark,
                    flush=True,
                )
            sheet_rows.append(
                [images.letterbox(image, FLAGS.cell) for image in (content, style)]
                + [images.letterbox(outputs[name], FLAGS.cell) for name in names]
            )
        for name in names:
            medians = np.median(np.array(figures[name]), axis=0)
            print(f"{size:4d} {'median':24s} {name:{width}s} " + " ".join(f"{v:8.3g}" for v in medians), flush=True)
        if "reference" in names:
            for name in (n for n in names if n != "reference"):
                wins = [
                    mine[0] <= ref[0] and mine[1] <= ref[1] and fits
                    for mine, ref, fits in zip(figures[name], figures["reference"], in_time[name])
                ]
                print(
                    f"{size:4d} target {name}: style and content ratios <= the reference's in <= its time "
                    f"on {sum(wins)}/{len(wins)} pairs",
                    flush=True,
                )
        sheet = images.contact_sheet(sheet_rows, [p[0] for p in panel], ["photo", "painting"] + names)
        path = out_dir / f"quality_{size}.jpg"
        images.save_image(str(path), sheet, quality=90)
        print(f"{size:4d} sheet -> {path}", flush=True)


if __name__ == "__main__":
    app.run(main)
