"""Time to a fixed loss at 512 px: coarse-to-fine against single-scale.

Both runs call the production pipeline, ``gatys.stylize`` with L-BFGS (or ``--optimizer=adam``), on the
HED VGG16 stand-in weights and chicago x starry_night (style layers
block1..5_conv1, content block4_conv2, ``--init`` content or noise). The single-scale run takes
``--steps`` iterations at 512 px. Its losses after a quarter, half, three quarters and all
of them are the targets. The multi-scale run takes ``--multiscale_steps`` iterations at each
of ``--scales`` (``GatysConfig.coarse_steps``), then iterates at 512 px until it reaches the
last target (at most ``--final_steps``). Times include building each scale's objective
(tracing), as a user would see them; the feature network is built once and shared.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/gatys_multiscale.py
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/gatys_multiscale.py --init=noise \
        --steps=300 --scales=128,256 --multiscale_steps=200

For each target the bench prints the speed-up and two bounds. "bound" is single-scale's
time over the 512 px stage's time alone: the speed-up if the coarser scales cost nothing.
"oracle" is the same from a start that already holds all of the answer a coarse image
can: single-scale's own 512 px result, resized to the last coarser size and back. A real
coarse scale hands on less of the answer than that, so the oracle estimates the best any
schedule with that last coarser size can do.

Target (issue 2): multi-scale at least 3x faster to the same loss.
"""

import dataclasses
import pathlib
import sys
import time

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402
from nst_tf import gatys  # noqa: E402
from nst_tf import images  # noqa: E402
from nst_tf import losses  # noqa: E402

common.define_gatys_problem_flags(image_size=512)
flags.DEFINE_list("scales", ["256"], "Coarser sizes of the multi-scale run.")
flags.DEFINE_integer("steps", 100, "Single-scale iterations; its final loss is the last target.")
flags.DEFINE_integer("multiscale_steps", 50, "Multi-scale iterations at each coarser scale.")
flags.DEFINE_integer(
    "final_steps",
    None,
    "Most multi-scale iterations at 512 px (default: 2 x --steps); the run stops at the last target.",
)
flags.DEFINE_integer("report_every", 2, "Iterations between loss reports (resolution).")
flags.DEFINE_enum("init", "content", ["content", "noise"], "Starting image of both runs.")
flags.DEFINE_enum("optimizer", "lbfgs", ["lbfgs", "adam"], "Optimiser of both runs (Adam: the default learning rate).")
FLAGS = flags.FLAGS


class _Reached(Exception):
    """Raised from the progress callback to end a run once it reaches the target."""


def timed_run(content, style, config, extractor, target=None):
    """Run gatys.stylize; return the final scale's reports [(iteration, seconds, loss)],
    the seconds the coarser scales took, and the image (None when stopped at ``target``)."""
    final_scale_from = config.total_steps() - config.num_steps
    trace = []
    coarse_s = 0.0

    def progress(done, total, values):
        nonlocal coarse_s
        now = time.perf_counter() - start
        if done <= final_scale_from:
            coarse_s = now
            return
        trace.append((done - final_scale_from, now, values["total"]))
        if target is not None and values["total"] <= target:
            raise _Reached()

    start = time.perf_counter()
    try:
        image = gatys.stylize(content, style, config, progress=progress, extractor=extractor)
    except _Reached:
        image = None
    return trace, coarse_s, image


def oracle_run(content, style, config, extractor, optimum, coarse_size, target):
    """Iterate at ``config.image_size`` from ``optimum`` resized to ``coarse_size`` and back.

    The start holds as much of the answer as an image of ``coarse_size`` can, so this
    run's iterations to ``target`` estimate the best a schedule ending there can do.
    Returns the reports [(iteration, seconds, loss)] as :func:`timed_run` does.
    """
    fine = images.resize_longest_side(content, config.image_size)
    start_image = images.resize_image(images.resize_longest_side(optimum, coarse_size), fine.shape[:2])
    trace = []

    def on_step(step, image, losses):
        trace.append((step, time.perf_counter() - start, float(losses["total"])))
        if trace[-1][2] <= target:
            raise _Reached()

    start = time.perf_counter()
    objective = gatys.make_objective(extractor, fine, gatys.prepare_styles([style], fine, config), config)
    try:
        gatys.optimize(objective, start_image[None], config, on_step=on_step, report_every=config.log_every)
    except _Reached:
        pass
    return trace


def main(argv):
    del argv
    base = gatys.GatysConfig(
        image_size=FLAGS.image_size,
        log_every=FLAGS.report_every,
        init=FLAGS.init,
        optimizer=FLAGS.optimizer,
        loss=losses.LossConfig(
            feature_extractor="vgg16",
            weights=FLAGS.weights,
            content_layers=("block4_conv2",),
            style_layers=tuple(f"block{b}_conv1" for b in range(1, 6)),
        ),
    )
    content = images.load_image(FLAGS.content)
    style = images.load_image(FLAGS.style)
    extractor = gatys.build_extractor(base)

    single = dataclasses.replace(base, num_steps=FLAGS.steps)
    multi = dataclasses.replace(
        base,
        num_steps=FLAGS.final_steps or 2 * FLAGS.steps,
        coarse_steps=FLAGS.multiscale_steps,
        scales=tuple(int(s) for s in FLAGS.scales),
    )
    single_trace, _, optimum = timed_run(content, style, single, extractor)
    targets = [next(p for p in single_trace if p[0] >= FLAGS.steps * q) for q in (0.25, 0.5, 0.75, 1)]
    multi_trace, coarse_s, _ = timed_run(content, style, multi, extractor, target=targets[-1][2])
    oracle_trace = oracle_run(content, style, multi, extractor, optimum, multi.sizes()[-2], targets[-1][2])

    sizes = "->".join(str(s) for s in multi.sizes())
    print(
        f"multi-scale {sizes}: {FLAGS.multiscale_steps} iterations per coarser scale "
        f"({coarse_s:.1f} s), then up to {multi.num_steps} at {FLAGS.image_size} px "
        f"until the target"
    )
    px = f"{FLAGS.image_size} px its"
    print(f"{'target: single-scale':>26s} {'':>9s} {'multi-scale':>27s} {'':>4s} {'oracle':>13s}")
    print(
        f"{'iterations':>10s} {'loss':>10s} {'s':>7s} {px:>11s} {'s':>7s} "
        f"{'speed-up':>8s} {'bound':>7s} {px:>11s} {'bound':>7s}"
    )
    for iterations, target_s, target in targets:
        line = f"{iterations:10d} {target:10.4g} {target_s:7.1f} "
        reached = next((p for p in multi_trace if p[2] <= target), None)
        if reached is None:
            line += f"{'not reached':>35s}"
        else:
            final_iterations, multi_s, _ = reached
            line += (
                f"{final_iterations:11d} {multi_s:7.1f} {target_s / multi_s:8.2f} "
                f"{target_s / (multi_s - coarse_s):7.2f}"
            )
        oracle = next((p for p in oracle_trace if p[2] <= target), None)
        line += f" {oracle[0]:11d} {target_s / oracle[1]:7.2f}" if oracle else f" {'not reached':>19s}"
        print(line)
    print(
        "target (issue 2): speed-up >= 3. bound: the speed-up if the coarser scales cost "
        "nothing; oracle: also with the last coarser scale handing on single-scale's result"
    )
    print(
        f"{FLAGS.image_size} px loss after the first {FLAGS.report_every} iterations: "
        f"single-scale {single_trace[0][2]:.4g} (from {FLAGS.init}), multi-scale "
        f"{multi_trace[0][2]:.4g} (from the upsampled {multi.sizes()[-2]} px result), oracle "
        f"{oracle_trace[0][2]:.4g}"
    )


if __name__ == "__main__":
    app.run(main)
