"""Throughput of the Johnson transform net: inference and one perceptual-loss training step.

Printed (issue 3):

* inference at 256, 512 and 1024 px, batch 1, through a ``tf.function`` with the serving
  signature ``[None, None, None, 3]``: images/s, seconds per image, and achieved GFLOP/s as a
  fraction of the float32 sgemm rate measured in the same run (target >= 0.8 at 1024 px);
  then the same net computing in bfloat16 (``nst-stylize --model --precision=bfloat16``),
  as a fraction of both the float32 and the bfloat16 matmul rate (``--precisions``);
* one training step at 256 px, batch 4, of the trainer's own objective
  (``nst_tf.losses.PerceptualLoss`` in Johnson's setting: VGG16 up to relu4_3, content at relu2_2,
  style at relu1_2/2_2/3_3/4_3, TV): forward, backward, Adam update (target >= 0.85 of sgemm),
  in each precision (bfloat16: the net and the loss network as ``--mixed_precision`` builds them
  on a CPU).

FLOPs are the convolutions' multiply-adds (2 per MAC, ``bench.common.conv_forward_flops``).
A training step counts 3x the transform net's forward FLOPs (forward, input gradients,
weight gradients), 2x VGG16's forward FLOPs up to relu4_3 (the stylized images' forward and
input gradients; the frozen VGG needs no weight gradients) and the photos' forward up to the
content layer, plus the Gram matrices of the style layers, forward and backward (2 B H W C²
each way). The time is the best of ``--repeats`` after a warm-up. The sgemm rate is
re-measured after each case and the ratio uses the best rate seen so far in the run, which
is conservative when other load on a shared machine depresses some measurements.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/feedforward.py [--width=1.0] [--jit_compile]
"""

import os
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import SgemmSamples  # noqa: E402
from bench.common import best_time  # noqa: E402
from bench.common import conv_forward_flops  # noqa: E402
from bench.common import peak_memory_mib  # noqa: E402
from bench.common import report  # noqa: E402
from nst_tf import losses  # noqa: E402
from nst_tf.models import TransformNet  # noqa: E402
from nst_tf.precision import policy_scope  # noqa: E402

flags.DEFINE_list("sizes", ["256", "512", "1024"], "Inference image sides in pixels (batch 1).")
flags.DEFINE_integer("train_size", 256, "Training crop side in pixels.")
flags.DEFINE_integer("train_batch", 4, "Training batch size.")
flags.DEFINE_float("width", 1.0, "TransformNet width multiplier.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (best is reported).")
flags.DEFINE_bool("jit_compile", False, "Compile the inference and training functions with XLA.")
flags.DEFINE_string("weights", None, "VGG16 weights for the loss net (timing does not depend on them).")
flags.DEFINE_bool("train", True, "Also time the training step.")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Compute precisions of the inference runs and training steps.")
FLAGS = flags.FLAGS


def bench_inference(model, sgemm, label, bf16=None):
    serve = tf.function(
        lambda images: model(images),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
        jit_compile=FLAGS.jit_compile,
    )
    for side in (int(s) for s in FLAGS.sizes):
        images = tf.random.uniform([1, side, side, 3])
        flops = conv_forward_flops(model, images.shape)
        seconds = best_time(lambda images=images: serve(images).numpy(), repeats=FLAGS.repeats)
        report(sgemm, f"{label} {side:4d} px batch 1", seconds, flops, extra=f"{1 / seconds:6.2f} images/s ", bf16=bf16)


def bench_training(model, sgemm, precision="float32", bf16=None):
    """One step of the trainer's real objective (losses.PerceptualLoss, Johnson's setting) and Adam,
    the loss network computing in ``precision`` like the model (``--mixed_precision``)."""
    shape = (FLAGS.train_batch, FLAGS.train_size, FLAGS.train_size, 3)
    style = np.random.default_rng(1).random((FLAGS.train_size, FLAGS.train_size, 3)).astype(np.float32)
    with policy_scope(precision):
        loss = losses.PerceptualLoss(losses.LossConfig.johnson(weights=FLAGS.weights))
        style_targets = loss.style_target([style])
    optimizer = keras.optimizers.Adam(1e-3)
    style_index = tf.zeros([FLAGS.train_batch], tf.int32)

    @tf.function(jit_compile=FLAGS.jit_compile)
    def step(photos):
        with tf.GradientTape() as tape:
            total, _ = loss(model(photos, training=True), loss.content_target(photos), style_targets, style_index)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return total

    photos = tf.random.uniform(shape, seed=2)
    style_features = loss.extractor(tf.zeros(shape))
    gram_flops = sum(
        2 * int(np.prod(style_features[name].shape)) * int(style_features[name].shape[-1]) for name in loss.style_layers
    )
    flops = (
        3 * conv_forward_flops(model, shape)
        + 2 * conv_forward_flops(loss.extractor, shape)
        + conv_forward_flops(loss.content_extractor, shape)
        + 2 * gram_flops
    )
    seconds = best_time(lambda: step(photos).numpy(), repeats=FLAGS.repeats)
    report(
        sgemm, f"training step {FLAGS.train_size} px batch {FLAGS.train_batch} {precision}", seconds, flops, bf16=bf16
    )


def main(argv):
    del argv
    model = TransformNet(width=FLAGS.width)
    print(
        f"TransformNet width {FLAGS.width} ({model.count_params():,} parameters), "
        f"jit_compile={FLAGS.jit_compile}, TF {tf.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    sgemm = SgemmSamples()
    for precision in FLAGS.precisions:
        bf16 = SgemmSamples(tf.bfloat16) if precision == "bfloat16" else None
        if precision != "float32":
            with policy_scope(precision):
                model = TransformNet(width=FLAGS.width)
        bench_inference(model, sgemm, f"{precision:9s}", bf16)
        if FLAGS.train:
            bench_training(model, sgemm, precision, bf16)
    print(f"peak memory {peak_memory_mib():.0f} MiB")


if __name__ == "__main__":
    app.run(main)
