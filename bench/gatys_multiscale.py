"""Time to a fixed loss at 512 px: coarse-to-fine (256 -> 512) against single-scale.

Both runs call the production pipeline, ``gatys.stylize`` with L-BFGS (or ``--optimizer=adam``), on the
HED VGG16 stand-in weights and chicago x starry_night (style layers
block1..5_conv1, content block4_conv2, ``--init`` content or noise). The single-scale run takes
``--steps`` iterations at 512 px; its final loss is the target. The
multi-scale run takes ``--multiscale_steps`` iterations per scale at
``--scales`` and then at 512 px, and stops as soon as its 512 px loss reaches
the target. Times include building each scale's objective (tracing), as a
user would see them; the feature network is built once and shared.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/gatys_multiscale.py
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/gatys_multiscale.py --init=noise \
        --steps=300 --scales=128,256 --multiscale_steps=200

The last lines show why the target is out of reach: the final scale starts
from an upsampled coarse result whose 512 px loss is close to a fresh start's,
and its iterations alone bound the speed-up even if the coarser scales cost
nothing.

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

common.define_gatys_problem_flags(image_size=512)
flags.DEFINE_list("scales", ["256"], "Coarser sizes of the multi-scale run.")
flags.DEFINE_integer("steps", 100, "Single-scale iterations; its final loss is the target.")
flags.DEFINE_integer("multiscale_steps", 50, "Multi-scale iterations per scale.")
flags.DEFINE_integer("report_every", 2, "Iterations between loss reports (resolution).")
flags.DEFINE_enum("init", "content", ["content", "noise"], "Starting image of both runs.")
flags.DEFINE_enum("optimizer", "lbfgs", ["lbfgs", "adam"], "Optimiser of both runs (Adam: the default learning rate).")
FLAGS = flags.FLAGS


class _Reached(Exception):
    """Raised from the progress callback to end a run once it reaches the target."""


def timed_run(content, style, config, extractor, target=None):
    """Run gatys.stylize; return the final scale's reports [(iteration, seconds, loss)]
    and the seconds the coarser scales took."""
    final_scale_from = config.num_steps * (len(config.sizes()) - 1)
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
        gatys.stylize(content, style, config, progress=progress, extractor=extractor)
    except _Reached:
        pass
    return trace, coarse_s


def main(argv):
    del argv
    base = gatys.GatysConfig(
        image_size=FLAGS.image_size, feature_extractor="vgg16", weights=FLAGS.weights,
        content_layers=("block4_conv2",),
        style_layers=tuple(f"block{b}_conv1" for b in range(1, 6)),
        log_every=FLAGS.report_every, init=FLAGS.init, optimizer=FLAGS.optimizer)
    content = images.load_image(FLAGS.content)
    style = images.load_image(FLAGS.style)
    extractor = gatys.build_extractor(base)

    single = dataclasses.replace(base, num_steps=FLAGS.steps)
    multi = dataclasses.replace(base, num_steps=FLAGS.multiscale_steps,
                                scales=tuple(int(s) for s in FLAGS.scales))
    single_trace, _ = timed_run(content, style, single, extractor)
    _, target_s, target = single_trace[-1]
    multi_trace, coarse_s = timed_run(content, style, multi, extractor, target=target)
    final_iterations, multi_s, multi_loss = multi_trace[-1]
    reached = multi_loss <= target

    sizes = "->".join(str(s) for s in multi.sizes())
    print(f"target: the single-scale loss after {FLAGS.steps} iterations at "
          f"{FLAGS.image_size} px = {target:.6g}")
    print(f"{'run':28s} {'s to target':>11s} {'loss':>11s} {'speed-up':>8s}")
    print(f"{'single-scale ' + str(FLAGS.image_size):28s} {target_s:11.1f} {target:11.6g} "
          f"{1.0:8.2f}")
    label = f"multi-scale {sizes} ({FLAGS.multiscale_steps}/scale)"
    if reached:
        print(f"{label:28s} {multi_s:11.1f} {multi_loss:11.6g} {target_s / multi_s:8.2f}")
        reference_s = target_s
    else:
        print(f"{label:28s} {'not reached':>11s} {multi_loss:11.6g} {'-':>8s}")
        reference_s = next(s for _, s, loss in single_trace if loss <= multi_loss)
        print(f"to the multi-scale run's final loss {multi_loss:.6g}: single-scale "
              f"{reference_s:.1f} s, multi-scale {multi_s:.1f} s, speed-up "
              f"{reference_s / multi_s:.2f}")
    print("target (issue 2): speed-up >= 3")
    # The coarse scales can be made cheaper, the final scale's iterations cannot: its
    # time alone bounds what any coarse schedule could reach from this start.
    fine_s = multi_s - coarse_s
    print(f"final scale alone: {final_iterations} iterations, {fine_s:.1f} s after "
          f"{coarse_s:.1f} s of coarser scales; speed-up if those cost nothing: "
          f"{reference_s / fine_s:.2f}")
    print(f"loss after the final scale's first {FLAGS.report_every} iterations: single-scale "
          f"{single_trace[0][2]:.4g} (from {FLAGS.init}), multi-scale {multi_trace[0][2]:.4g} "
          f"(from the upsampled {multi.sizes()[-2]} px result)")
    print_detail_floor(content, style, multi, extractor)


def print_detail_floor(content, style, config, extractor):
    """The content term an upsampled coarse image starts from: the detail it lacks.

    Every coarse-to-fine run starts its last scale from an upsampled image, so its content
    term starts at or above that of the upsampled coarse *content* image.
    """
    fine = images.resize_longest_side(content, config.image_size)
    coarse = images.resize_longest_side(content, config.sizes()[-2])
    objective = gatys.make_objective(extractor, fine, gatys.prepare_styles([style], fine, config),
                                     config)
    _, terms = objective.losses(images.resize_image(coarse, fine.shape[:2])[None])
    print(f"content term of the {coarse.shape[1]}x{coarse.shape[0]} content upsampled to "
          f"{fine.shape[1]}x{fine.shape[0]}: {float(terms['content']) * config.content_weight:.4g} "
          f"(the floor the final scale starts above)")


if __name__ == "__main__":
    app.run(main)
