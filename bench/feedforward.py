"""Throughput of the Johnson transform net: inference and one perceptual-loss training step.

Printed (issue 3):

* inference at 256, 512 and 1024 px, batch 1, through a ``tf.function`` with the serving
  signature ``[None, None, None, 3]``: images/s, seconds per image, and achieved GFLOP/s as a
  fraction of the float32 sgemm rate measured in the same run (target >= 0.8 at 1024 px);
* one training step at 256 px, batch 4: transform net forward, VGG16 perceptual loss up to
  relu4_3 (content at block2_conv2, style at block1_conv2/2_conv2/3_conv3/4_conv3, TV),
  backward, Adam update (target >= 0.85 of sgemm).

FLOPs are the convolutions' multiply-adds (2 per MAC, ``bench.common.conv_forward_flops``).
A training step counts 3x the transform net's forward FLOPs (forward, input gradients,
weight gradients) plus 3x VGG16's forward FLOPs at the same batch (the content targets'
forward, the stylized images' forward, and their input gradients; the frozen VGG needs no
weight gradients). The time is the best of ``--repeats`` after a warm-up. The sgemm rate is
re-measured after each case and the ratio uses the best rate seen so far in the run, which
is conservative when other load on a shared machine depresses some measurements.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/feedforward.py [--width=1.0] [--jit_compile]
"""

import os
import pathlib
import sys

from absl import app
from absl import flags

import keras
import tensorflow as tf

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import best_time, conv_forward_flops, peak_memory_mib, sgemm_gflops  # noqa: E402
from nst_tf import features, losses  # noqa: E402
from nst_tf.models import TransformNet  # noqa: E402

flags.DEFINE_list("sizes", ["256", "512", "1024"], "Inference image sides in pixels (batch 1).")
flags.DEFINE_integer("train_size", 256, "Training crop side in pixels.")
flags.DEFINE_integer("train_batch", 4, "Training batch size.")
flags.DEFINE_float("width", 1.0, "TransformNet width multiplier.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (best is reported).")
flags.DEFINE_bool("jit_compile", False, "Compile the inference and training functions with XLA.")
flags.DEFINE_string("weights", None, "VGG16 weights for the loss net (timing does not depend on them).")
flags.DEFINE_bool("train", True, "Also time the training step.")
FLAGS = flags.FLAGS

CONTENT_LAYER = "block2_conv2"
STYLE_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")


_SGEMM_RATES = []


def report(label, seconds, flops, extra=""):
    """Print one case; the ratio is over the best sgemm rate of the run so far (conservative)."""
    _SGEMM_RATES.append(sgemm_gflops())
    best = max(_SGEMM_RATES)
    gflops = flops / seconds / 1e9
    print(
        f"{label}: {extra}{seconds:7.3f} s  {flops / 1e9:6.1f} GFLOP  {gflops:6.1f} GFLOP/s"
        f"  = {gflops / best:.2f} of sgemm ({best:.0f} GFLOP/s best in run, {_SGEMM_RATES[-1]:.0f} just now)",
        flush=True,
    )


def bench_inference(model):
    serve = tf.function(
        lambda images: model(images),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
        jit_compile=FLAGS.jit_compile,
    )
    for side in (int(s) for s in FLAGS.sizes):
        images = tf.random.uniform([1, side, side, 3])
        flops = conv_forward_flops(model, images.shape)
        seconds = best_time(lambda: serve(images).numpy(), repeats=FLAGS.repeats)
        report(f"inference {side:4d} px batch 1", seconds, flops, extra=f"{1 / seconds:6.2f} images/s ")


def make_train_step(model, extractor, style_grams, optimizer):
    """Johnson et al.'s perceptual loss (content + style + TV) and one Adam update."""

    def step(content_images):
        content_targets = extractor(content_images)[CONTENT_LAYER]
        with tf.GradientTape() as tape:
            stylized = model(content_images, training=True)
            feats = extractor(stylized)
            loss = (
                losses.content_loss(feats[CONTENT_LAYER], content_targets, reduction="mean")
                + 5.0 * losses.perceptual_style_loss({k: feats[k] for k in STYLE_LAYERS}, style_grams)
                + 1e-6 * losses.total_variation_loss(stylized)
            )
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return tf.function(step, jit_compile=FLAGS.jit_compile)


def bench_training(model):
    extractor = features.build_feature_extractor(
        "vgg16", layers=list(dict.fromkeys((CONTENT_LAYER,) + STYLE_LAYERS)), weights=FLAGS.weights
    )
    shape = (FLAGS.train_batch, FLAGS.train_size, FLAGS.train_size, 3)
    style = tf.random.uniform((1, FLAGS.train_size, FLAGS.train_size, 3), seed=1)
    style_feats = extractor(style)
    style_grams = {k: losses.gram_matrix(style_feats[k], normalize=True) for k in STYLE_LAYERS}
    optimizer = keras.optimizers.Adam(1e-3)
    step = make_train_step(model, extractor, style_grams, optimizer)
    content = tf.random.uniform(shape, seed=2)
    flops = 3 * conv_forward_flops(model, shape) + 3 * conv_forward_flops(extractor, shape)
    seconds = best_time(lambda: step(content).numpy(), repeats=FLAGS.repeats)
    report(f"training step {FLAGS.train_size} px batch {FLAGS.train_batch}", seconds, flops)


def main(argv):
    del argv
    model = TransformNet(width=FLAGS.width)
    print(
        f"TransformNet width {FLAGS.width} ({model.count_params():,} parameters), "
        f"jit_compile={FLAGS.jit_compile}, TF {tf.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    _SGEMM_RATES.append(sgemm_gflops())
    bench_inference(model)
    if FLAGS.train:
        bench_training(model)
    print(f"peak memory {peak_memory_mib():.0f} MiB")


if __name__ == "__main__":
    app.run(main)
