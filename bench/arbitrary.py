"""Throughput of AdaIN (Huang & Belongie 2017): inference and one training step, against the
float32 sgemm rate of the same run and against the same network in PyTorch eager.

Printed (issue 18):

* inference at 256, 512 and 1024 px, batch 1: ``ArbitraryStyleNet.stylize`` (VGG19 encoder to
  relu4_1, AdaIN, the mirrored decoder) of one photo with a cached style vector, as the exported
  ``stylize_with_vector`` runs it, through a ``tf.function`` with a ``[None, None, None, 3]``
  signature: images/s and achieved conv GFLOP/s as a fraction of the float32 sgemm rate
  (target >= 0.8); then the same net computing in bfloat16 (``--precisions``), also as a
  fraction of the bfloat16 matmul rate;
* the same inference in PyTorch eager (``--torch``): the network written here from the paper
  (VGG19 to relu4_1 with the caffe preprocessing, AdaIN, a decoder of reflection-padded 3x3
  convolutions and nearest 2x upsampling, as naoto0804/pytorch-AdaIN writes it), NCHW, holding
  the Keras model's weights, checked to give the same picture, and the ratio of its time to
  ours (target: ours >= 1.3x faster at 1024 px);
* one training step at 256 px, batch 8, of AdaIN's objective: encode photos and paintings,
  AdaIN, decode, and ``nst_tf.losses.PerceptualLoss`` with ``LossConfig.huang()`` (content: MSE
  of ``f(g(t))`` against ``t`` at relu4_1; style: the mean_std statistic at relu1_1 .. relu4_1,
  weight 10) on the model's own encoder, then Adam on the decoder (target >= 0.8 of sgemm);
  the torch reference's step too, for scale.

FLOPs are the convolutions' multiply-adds (2 per MAC, ``bench.common.conv_forward_flops``).
Inference: one encoder and one decoder pass. Training: four encoder passes (photos, paintings,
the output forward and its input gradient; the frozen VGG needs no weight gradients) and three
decoder passes (forward, input and weight gradients) less the input gradient of the decoder's
first convolution, which no loss term needs. The time is the best of ``--repeats`` after a
warm-up. The sgemm rate is re-measured after each case and the ratio uses the best rate seen so
far in the run (conservative on a shared machine).

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/arbitrary.py [--jit_compile] [--precisions=float32]
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
from nst_tf.models import arbitrary  # noqa: E402
from nst_tf.models.arbitrary import ArbitraryStyleNet  # noqa: E402
from nst_tf.models.arbitrary import StyleVector  # noqa: E402
from nst_tf.precision import policy_scope  # noqa: E402
from nst_tf.training import arbitrary as training_arbitrary  # noqa: E402

flags.DEFINE_list("sizes", ["256", "512", "1024"], "Inference image sides in pixels (batch 1).")
flags.DEFINE_integer("train_size", 256, "Training crop side in pixels.")
flags.DEFINE_integer("train_batch", 8, "Training batch size.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (best is reported).")
flags.DEFINE_bool("jit_compile", False, "Compile the inference and training functions with XLA.")
flags.DEFINE_bool("train", True, "Also time the training step.")
flags.DEFINE_bool("torch", True, "Also time the PyTorch eager reference (bench/requirements.txt).")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Compute precisions of our inference and training.")
FLAGS = flags.FLAGS


def inference_flops(model, side):
    features = [1, side // model.size_multiple, side // model.size_multiple, model.decoder.input_channels]
    return conv_forward_flops(model.encoder, (1, side, side, 3)) + conv_forward_flops(model.decoder, features)


def training_flops(model, batch, side):
    """4 encoder passes and 3 decoder passes, less the decoder's first input gradient (module docstring)."""
    m = model.size_multiple
    features = [batch, side // m, side // m, model.decoder.input_channels]
    first = getattr(model.decoder, model.decoder._conv_names[0])  # pylint: disable=protected-access
    first_input_grad = 2 * int(np.prod(features[:3])) * first.kernel_size**2 * first.filters * features[3]
    encoder = conv_forward_flops(model.encoder, (batch, side, side, 3))
    return 4 * encoder + 3 * conv_forward_flops(model.decoder, features) - first_input_grad


def bench_inference(model, sgemm, label, style, bf16=None):
    """``stylize`` with a cached vector; returns ``{side: seconds}``."""
    vector = model.style_vector(style)
    serve = tf.function(
        lambda images, packed: model.stylize(images, StyleVector.from_tensor(packed)),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, None], tf.float32)],
        jit_compile=FLAGS.jit_compile,
    )
    times = {}
    for side in (int(s) for s in FLAGS.sizes):
        images = tf.random.uniform([1, side, side, 3], seed=side)
        seconds = best_time(lambda images=images: serve(images, vector.to_tensor()).numpy(), repeats=FLAGS.repeats)
        report(
            sgemm,
            f"{label} {side:4d} px batch 1",
            seconds,
            inference_flops(model, side),
            extra=f"{1 / seconds:6.2f} images/s ",
            bf16=bf16,
        )
        times[side] = seconds
    return times


def bench_training(model, sgemm, precision="float32", bf16=None):
    """One step of AdaIN's objective on the model's own encoder, as nst-train-arbitrary minimises it."""
    loss = losses.PerceptualLoss(losses.LossConfig.huang(weights=None), extractor=model.encoder)
    optimizer = keras.optimizers.Adam(1e-4)
    variables = model.decoder.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=FLAGS.jit_compile)
    def step(content, style):
        with tf.GradientTape() as tape:
            total = training_arbitrary.loss_terms(model, loss, content, style)["total"]
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return total

    shape = (FLAGS.train_batch, FLAGS.train_size, FLAGS.train_size, 3)
    content, style = tf.random.uniform(shape, seed=2), tf.random.uniform(shape, seed=3)
    seconds = best_time(lambda: step(content, style).numpy(), repeats=FLAGS.repeats)
    label = f"training step {FLAGS.train_size} px batch {FLAGS.train_batch} {precision}"
    report(sgemm, label, seconds, training_flops(model, *shape[:2]), bf16=bf16)
    return seconds


# ------------------------------------------------------------------ the PyTorch reference


def torch_reference(model):
    """The AdaIN network in PyTorch eager (NCHW), from the paper, holding ``model``'s weights.

    Returns ``(stylize(content, style_mean, style_std), modules)``: ``content`` a float tensor
    ``[B, 3, H, W]`` in [0, 1] (H, W multiples of 8), the statistics ``[1, C]``.
    """
    import torch  # pylint: disable=import-outside-toplevel  # bench-only dependency

    nn = torch.nn

    def conv(layer, padding=0):
        kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
        module = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0], padding=padding)
        module.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        module.bias.data = torch.from_numpy(bias.copy())
        return module

    class Caffe(nn.Module):
        """RGB in [0, 1] -> BGR in [0, 255] minus the ImageNet mean."""

        def forward(self, x):
            mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
            return x.flip(1) * 255.0 - mean

    encoder = [Caffe()]
    taps = []  # indices of the relu outputs the loss reads (relu1_1, relu2_1, relu3_1, relu4_1)
    for layer in model.encoder.layers:
        if isinstance(layer, keras.layers.Conv2D):
            encoder += [conv(layer, padding=1), nn.ReLU()]
            if layer.name.endswith("_conv1"):
                taps.append(len(encoder) - 1)
        elif isinstance(layer, keras.layers.MaxPooling2D):
            encoder.append(nn.MaxPool2d(2))
    encoder = nn.Sequential(*encoder)
    decoder = []
    names = model.decoder._conv_names  # pylint: disable=protected-access
    for i, name in enumerate(names):
        layer = getattr(model.decoder, name)
        if layer.upsample > 1:
            decoder.append(nn.Upsample(scale_factor=layer.upsample, mode="nearest"))
        decoder += [nn.ReflectionPad2d(1), conv(layer.conv)]
        if i < len(names) - 1:
            decoder.append(nn.ReLU())
    decoder = nn.Sequential(*decoder)

    def mean_std(x):
        """Per-instance, per-channel mean and sqrt(biased variance + ε), as ops.channel_mean_std."""
        mean = x.mean(dim=(2, 3))
        return mean, (x.var(dim=(2, 3), unbiased=False) + arbitrary.EPSILON).sqrt()

    def adain(content, style_mean, style_std):
        mean, std = mean_std(content)
        normalised = (content - mean[:, :, None, None]) / std[:, :, None, None]
        return normalised * style_std[:, :, None, None] + style_mean[:, :, None, None]

    def stylize(content, style_mean, style_std):
        return decoder(adain(encoder(content), style_mean, style_std)).clamp(0.0, 1.0)

    return stylize, {"encoder": encoder, "decoder": decoder, "taps": taps, "mean_std": mean_std, "adain": adain}


def bench_torch_inference(model, sgemm, style):
    import torch  # pylint: disable=import-outside-toplevel

    stylize, _ = torch_reference(model)
    mean, std = (torch.from_numpy(s.numpy()) for s in model.style_vector(style))
    # Same network, same weights: the reference must draw the same picture.
    check = tf.random.uniform([1, 64, 96, 3], seed=9)
    with torch.inference_mode():
        got = stylize(torch.from_numpy(check.numpy().transpose(0, 3, 1, 2).copy()), mean, std).numpy()
    want = model.stylize(check, model.style_vector(style)).numpy().transpose(0, 3, 1, 2)
    print(f"torch reference vs ours, 64 x 96 px: max |difference| {np.abs(got - want).max():.2e}", flush=True)
    times = {}
    for side in (int(s) for s in FLAGS.sizes):
        images = torch.rand(1, 3, side, side)

        def run(images=images):
            with torch.inference_mode():
                stylize(images, mean, std)

        seconds = best_time(run, repeats=FLAGS.repeats)
        report(
            sgemm,
            f"torch eager {side:4d} px batch 1",
            seconds,
            inference_flops(model, side),
            extra=f"{1 / seconds:6.2f} images/s ",
        )
        times[side] = seconds
    return times


def bench_torch_training(model, sgemm):
    """The same objective and Adam step in torch eager, for scale."""
    import torch  # pylint: disable=import-outside-toplevel

    _, net = torch_reference(model)
    encoder, decoder, taps, mean_std, adain = (net[k] for k in ("encoder", "decoder", "taps", "mean_std", "adain"))
    for p in encoder.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-4)

    def features(x):
        out = []
        for i, module in enumerate(encoder):
            x = module(x)
            if i in taps:
                out.append(x)
        return out

    def step(content, style):
        style_features = features(style)
        with torch.no_grad():
            c = encoder(content)
        t = adain(c, *mean_std(style_features[-1]))
        outputs = features(decoder(t))
        content_loss = torch.nn.functional.mse_loss(outputs[-1], t)
        style_loss = 0.0
        for out, target in zip(outputs, style_features):
            (m, s), (tm, ts) = mean_std(out), mean_std(target)
            style_loss = (
                style_loss + ((m - tm) ** 2).sum(1).mean() / m.shape[1] + ((s - ts) ** 2).sum(1).mean() / m.shape[1]
            )
        total = content_loss + 10.0 * style_loss
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        return total.item()

    shape = (FLAGS.train_batch, 3, FLAGS.train_size, FLAGS.train_size)
    content, style = torch.rand(*shape), torch.rand(*shape)
    seconds = best_time(lambda: step(content, style), repeats=FLAGS.repeats)
    label = f"torch eager training step {FLAGS.train_size} px batch {FLAGS.train_batch}"
    report(sgemm, label, seconds, training_flops(model, FLAGS.train_batch, FLAGS.train_size))
    return seconds


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    style = tf.random.uniform([1, 256, 256, 3], seed=1)
    print(f"AdaIN VGG19 to relu4_1, jit_compile={FLAGS.jit_compile}, TF {tf.__version__}, {os.cpu_count()} CPUs")
    if FLAGS.torch:
        import torch  # pylint: disable=import-outside-toplevel

        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    sgemm = SgemmSamples()
    ours, model = {}, None
    for precision in FLAGS.precisions:
        bf16 = SgemmSamples(tf.bfloat16) if precision == "bfloat16" else None
        with policy_scope(precision):
            model = ArbitraryStyleNet("vgg19", weights=None)
        if precision == "float32":
            reference = model
        ours[precision] = bench_inference(model, sgemm, f"{precision:9s}", style, bf16)
        if FLAGS.train:
            bench_training(model, sgemm, precision, bf16)
    if FLAGS.torch and "float32" in ours:
        theirs = bench_torch_inference(reference, sgemm, style)
        for side, seconds in theirs.items():
            print(f"{side:4d} px: ours float32 {seconds / ours['float32'][side]:.2f}x faster than torch eager")
        if FLAGS.train:
            bench_torch_training(reference, sgemm)
    print(f"peak memory {peak_memory_mib():.0f} MiB")


if __name__ == "__main__":
    app.run(main)
