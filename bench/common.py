"""Shared benchmark helpers: the machine's sgemm rate and analytic conv FLOP counts.

Every benchmark reports its throughput as a fraction of the float32 matrix
multiply rate measured in the same run, because this machine is shared and
absolute seconds drift from run to run.
"""

import io
import os
import pathlib
import re
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import flags
from PIL import Image

from nst_tf import layers as nst_layers

REPO = pathlib.Path(__file__).resolve().parents[1]
ASSETS = pathlib.Path(os.environ.get("NST_ASSETS", REPO.parent / "shared" / "assets"))


def define_gatys_problem_flags(image_size):
    """--weights, --content, --style, --image_size of the issue's Gatys problem.

    chicago x starry_night on the HED VGG16 stand-in weights, so every Gatys
    benchmark measures the same objective.
    """
    flags.DEFINE_string(
        "weights",
        str(ASSETS / "keras-models" / "vgg16_hed_bsds500_notop.weights.h5"),
        "Keras VGG16 no-top weights file (the HED stand-in).",
    )
    flags.DEFINE_string("content", str(ASSETS / "images" / "content" / "chicago.jpg"), "Content image.")
    flags.DEFINE_string("style", str(ASSETS / "images" / "style" / "starry_night.jpg"), "Style image.")
    flags.DEFINE_integer("image_size", image_size, "Longest side in pixels.")


def sgemm_gflops(n=2048, repeats=10, dtype=tf.float32):
    """Best-of-``repeats`` ``n x n`` matmul rate through TensorFlow, in GFLOP/s: float32
    (sgemm) by default; ``dtype=tf.bfloat16`` for the rate bfloat16 models can reach."""
    a = tf.random.normal([n, n], dtype=dtype)
    b = tf.random.normal([n, n], dtype=dtype)
    mm = tf.function(lambda x, y: tf.matmul(x, y))
    mm(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mm(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


class SgemmSamples:
    """The run's matmul rate (float32 by default), sampled before and after each timed case.

    Ratios use the best sample so far: one taken on a busy moment of a shared machine
    would flatter every ratio computed against it.
    """

    def __init__(self, dtype=tf.float32):
        self.dtype = dtype
        self.rates = [sgemm_gflops(dtype=dtype)]

    def sample(self):
        """Measure the rate once more; return ``(best so far, this sample)`` in GFLOP/s."""
        self.rates.append(sgemm_gflops(dtype=self.dtype))
        return max(self.rates), self.rates[-1]


def report(sgemm, label, seconds, flops, extra="", bf16=None):
    """Print one timed case as a ratio to the best sgemm rate of the run so far
    (:class:`SgemmSamples`, conservative), and to the best bfloat16 matmul rate when ``bf16``
    (another :class:`SgemmSamples`) is given."""
    best, now = sgemm.sample()
    gflops = flops / seconds / 1e9
    print(
        f"{label}: {extra}{seconds:7.3f} s  {flops / 1e9:7.1f} GFLOP  {gflops:6.1f} GFLOP/s"
        f"  = {gflops / best:.2f} of sgemm ({best:.0f} GFLOP/s best in run, {now:.0f} just now)",
        flush=True,
    )
    if bf16 is not None:
        bf16_best, _ = bf16.sample()
        print(
            f"  = {gflops / bf16_best:.2f} of the bfloat16 matmul rate ({bf16_best:.0f} GFLOP/s best in run)",
            flush=True,
        )
    return gflops / best


def conv_forward_flops(model, input_shape):
    """Multiply-add FLOPs (2 per MAC) of every Conv2D / Conv2DTranspose / Dense in one forward pass,
    each ``layers.ReflectConv2D`` counted as one plain convolution whatever form computes it.

    ``input_shape`` is the full NHWC shape. Layers are visited recursively, and
    each layer's output shape is found by tracing the model once.
    """
    total = 0
    captured = []

    def visit(layer):
        if isinstance(
            layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense, nst_layers.ReflectConv2D)
        ):
            captured.append(layer)
            return
        for sub in getattr(layer, "_layers", []) or []:
            visit(sub)

    visit(model)
    outputs = {}
    originals = {}
    for layer in captured:
        originals[layer] = layer.call

        def hook(*args, _layer=layer, **kwargs):
            out = originals[_layer](*args, **kwargs)
            outputs[_layer] = (args[0].shape, out.shape)
            return out

        layer.call = hook
    try:
        model(tf.zeros(input_shape))
    finally:
        for layer, call in originals.items():
            layer.call = call
    for layer, (in_shape, out_shape) in outputs.items():
        if isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(out_shape[:-1])) * int(in_shape[-1]) * int(out_shape[-1])
        elif isinstance(layer, nst_layers.ReflectConv2D):
            # The plain convolution's count at the output resolution, whatever form computes
            # it (sub-pixel, space_to_depth in or out): the zero taps of those forms are not
            # counted. Every form's output holds (output pixels x filters) values.
            k = layer.kernel_size
            total += 2 * int(np.prod(out_shape)) * k * k * int(layer.conv.kernel.shape[2])
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            kh, kw = layer.kernel_size
            total += 2 * int(np.prod(in_shape[:-1])) * kh * kw * int(in_shape[-1]) * layer.filters
        else:
            kh, kw = layer.kernel_size
            total += 2 * int(np.prod(out_shape[:-1])) * kh * kw * int(in_shape[-1]) * layer.filters
    return total


def peak_memory_mib():
    """Peak resident set size of this process so far, in MiB (Linux ru_maxrss is KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn):
    """Wall time of one ``fn()`` call, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_time(fn, repeats=3, warmup=1):
    """Best wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls, in seconds."""
    for _ in range(warmup):
        fn()
    return min(timed(fn) for _ in range(repeats))


def photo_jpeg(side, seed=0):
    """A ``side`` x ``side`` JPEG with smooth gradients and some noise, like a photo's bytes."""
    y, x = np.mgrid[0:side, 0:side] / side
    noise = np.random.default_rng(seed).random((side, side, 3))
    pixels = np.stack([x, y, 0.5 + 0.5 * np.sin(12 * x * y)], -1) * 0.8 + 0.2 * noise
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def start_nst_serve(model_base_path, *flags_):
    """``nst-serve`` as a subprocess on 127.0.0.1, any free port; returns (process, url) once it listens.

    Stop it with ``process.send_signal(signal.SIGINT)`` and ``process.wait()``.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "nst_tf.cli.serve", f"--model_base_path={model_base_path}", "--port=0", *flags_]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.search(r"at (http://127\.0\.0\.1:\d+)$", line.strip())
    if not match:
        proc.kill()
        raise RuntimeError(f"nst-serve did not start: {line!r}")
    return proc, match.group(1)
