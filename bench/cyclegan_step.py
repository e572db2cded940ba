"""One full CycleGAN training step at 256 px, batch 1, as a fraction of this machine's sgemm rate.

The step is the trainer's own ``tf.function`` (both generators with identity
loss on, the history pools, both discriminators, both Adam updates), fed a
fixed batch so data loading is not timed. ``--jit_compile`` also times the
same step compiled with XLA.

FLOPs per step (conv multiply-adds x 2, from ``bench.common.conv_forward_flops``):
6 generator forwards (G(a), F(G(a)), F(b), G(F(b)), G(b), F(a)), each with a
backward costing twice the forward; the discriminators run 2 forwards for the
generator loss (backward to the input only: 1x) and 4 for their own loss (3x).
So 18 G + 16 D forward equivalents.

The ratio is over the best sgemm sample of the run (``bench.common.SgemmSamples``).

    python bench/cyclegan_step.py [--repeats=2] [--jit_compile]
"""

import argparse
import os
import sys
import tempfile

import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SgemmSamples  # noqa: E402
from common import best_time  # noqa: E402
from common import conv_forward_flops  # noqa: E402
from common import peak_memory_mib  # noqa: E402

from nst_tf.data import UnpairedDataConfig  # noqa: E402
from nst_tf.training.cyclegan import CycleGANConfig  # noqa: E402
from nst_tf.training.cyclegan import CycleGANTrainer  # noqa: E402

ASSETS = os.environ.get(
    "NST_ASSETS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "assets")
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jit_compile", action="store_true", help="also time the XLA-compiled step")
    args = parser.parse_args()

    sgemm = SgemmSamples()
    out = tempfile.mkdtemp(prefix="cyclegan-bench-")
    config = CycleGANConfig(
        output_dir=out,
        data=UnpairedDataConfig(
            data_dir=os.path.join(ASSETS, "cyclegan", "monet2photo"), image_size=args.size, load_size=args.size
        ),
        steps_per_epoch=1000,
    )
    trainer = CycleGANTrainer(config)
    shape = [1, args.size, args.size, 3]
    batch = {"a": tf.random.uniform(shape, -1, 1, seed=1), "b": tf.random.uniform(shape, -1, 1, seed=2)}
    g_flops = conv_forward_flops(trainer.generators["a2b"], shape)
    d_flops = conv_forward_flops(trainer.discriminators["a2b"], shape)
    flops = 18 * g_flops + 16 * d_flops
    print(
        f"sgemm: {sgemm.rates[0]:.1f} GFLOP/s; step: {flops / 1e9:.1f} GFLOP "
        f"(G forward {g_flops / 1e9:.1f}, D forward {d_flops / 1e9:.2f})"
    )

    variants = [("tf.function", tf.function(trainer._cross_replica_step))]
    if args.jit_compile:
        variants.append(("tf.function(jit_compile=True)", tf.function(trainer._cross_replica_step, jit_compile=True)))
    for name, step in variants:
        seconds = best_time(lambda step=step: [float(v) for v in step(batch).values()], repeats=args.repeats, warmup=1)
        rate = flops / seconds / 1e9
        best, now = sgemm.sample()
        print(
            f"{name}: {seconds:.2f} s/step, {rate:.1f} GFLOP/s = {rate / best:.2f} of sgemm "
            f"({best:.0f} GFLOP/s best in run, {now:.0f} just now), "
            f"peak RSS so far {peak_memory_mib() / 1024:.2f} GiB"
        )


if __name__ == "__main__":
    main()
