"""tf.distribute: MirroredStrategy on two logical CPUs, MultiWorkerMirroredStrategy with two local workers
(feed-forward and CycleGAN trainers).

Both run in subprocesses: logical devices and the multi-worker cluster must be
configured before TensorFlow initialises its runtime.
"""

import json
import subprocess

import numpy as np
import portpicker
import pytest
import tensorflow as tf
from feedforward_helpers import REPO
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles
from feedforward_helpers import mirrored_script
from feedforward_helpers import python_command
from feedforward_helpers import run_python
from feedforward_helpers import smooth_image

from nst_tf import images

SETUP = """
import json, sys
import numpy as np
from feedforward_helpers import tiny_config
from nst_tf.training import base, feedforward as ff
photos, style, out = sys.argv[1:]
"""

MIRRORED = mirrored_script(
    SETUP,
    """
def trained(name, strategy, steps):
    config = tiny_config(photos, [style], f"{out}/{name}", max_steps=steps, batch_size=4, learning_rate=1e-3)
    trainer = ff.FeedForwardTrainer(config, strategy=strategy)
    trainer.train()
    return trainer, [np.array(w.numpy()) for w in trainer.model.weights]
""",
)

WORKER = (
    """
from nst_tf.training import base
strategy = base.make_strategy()  # first, before other TF work
"""
    + SETUP
    + """
# Held-out metrics (the training photos stand in) at step 2 and the last step, on the chief only.
config = tiny_config(
    photos, [style], out, max_steps=3, batch_size=4, learning_rate=1e-3, eval_dir=photos, eval_every=2
)
trainer = ff.FeedForwardTrainer(config, strategy=strategy)
result = trainer.train()
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "chief": trainer.chief,
    "step": result.step,
    "evaluated": "style0/style_gram_ratio" in result.eval_metrics,
    "checksum": float(sum(np.abs(w.numpy()).sum() for w in trainer.model.weights)),
}))
"""
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distribute")
    return make_photos(folder / "photos"), make_styles(folder / "styles", count=1)[0], folder


def last_json_line(done):
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mirrored_on_two_logical_cpus_matches_one_device(inputs):
    photos, style, folder = inputs
    report = last_json_line(run_python(MIRRORED, photos, style, folder / "mirrored"))
    assert report["replicas"] == 2
    assert report["position"] == [12, 12]  # 3 global batches of 4: the same photos
    # Same global batches, per-replica means averaged: the same training up to float error,
    # which Adam can blow up to a whole step in a weight whose gradient is near zero; over
    # all weights together it is 3e-4 of the update (AVX2-only CPU).
    assert report["update"] > 1e-4
    assert report["difference_norm"] < 0.01 * report["update_norm"]


def run_two_workers(code, *args):
    """Run ``code`` as both workers of a local two-worker cluster; their last JSON lines and stderrs."""
    workers = [f"127.0.0.1:{port}" for port in (portpicker.pick_unused_port(), portpicker.pick_unused_port())]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        argv, env = python_command(code, *args, env={"TF_CONFIG": json.dumps(tf_config)})
        processes.append(
            subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    reports, stderrs = [], []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-3000:]
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
            stderrs.append(stderr)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return reports, stderrs


def test_multi_worker_with_two_local_workers(inputs):
    photos, style, folder = inputs
    out = folder / "multiworker"
    reports, _ = run_two_workers(WORKER, photos, style, out)
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["chief"] for r in reports] == [True, False]
    assert [r["step"] for r in reports] == [3, 3]
    assert [r["evaluated"] for r in reports] == [True, False]
    assert reports[0]["checksum"] == reports[1]["checksum"]  # replicas stay in sync
    assert (out / "checkpoints" / "ckpt-3.index").is_file()
    assert (out / "model_config.json").is_file()


CYCLEGAN_WORKER = """
import json, sys
import numpy as np
from nst_tf import data
from nst_tf.training import cyclegan
data_dir, out, max_steps = sys.argv[1:]
config = cyclegan.CycleGANConfig(
    output_dir=out, data=data.UnpairedDataConfig(data_dir=data_dir, image_size=32, load_size=36),
    n_blocks=1, ngf=4, ndf=4,
    epochs=1, epochs_decay=1, steps_per_epoch=2, batch_size=2, pool_size=2, num_samples=1,
    log_every=1, max_steps=int(max_steps),
)
# No strategy passed: the trainer makes it from TF_CONFIG before it counts or reads any data.
trainer = cyclegan.CycleGANTrainer(config)
result = trainer.train()
nets = [v for model in trainer.models.values() for v in model.weights]
optimizers = [v for opt in (trainer.g_optimizer, trainer.d_optimizer) for v in opt.variables]
print(json.dumps({
    "replicas": trainer.strategy.num_replicas_in_sync,
    "chief": trainer.chief,
    "step": result.step,
    "nets": float(sum(np.abs(v.numpy()).sum() for v in nets)),
    "optimizers": float(sum(np.abs(v.numpy()).sum() for v in optimizers)),
}))
"""


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory):
    """Six images per domain in the authors' layout (trainA, trainB, testA, testB)."""
    root = tmp_path_factory.mktemp("unpaired")
    rng = np.random.default_rng(0)
    for split, count in (("trainA", 4), ("trainB", 4), ("testA", 1), ("testB", 1)):
        for i in range(count):
            images.save_image(str(root / split / f"{i}.png"), smooth_image(rng, 40 + i, 48))
    return root


def test_cyclegan_with_two_local_workers_trains_and_resumes_in_step(unpaired, tmp_path):
    """Two epochs of two steps, stopped after the first epoch and resumed by both workers."""
    out = tmp_path / "cyclegan"
    first, stderrs = run_two_workers(CYCLEGAN_WORKER, unpaired, out, 2)
    assert [r["replicas"] for r in first] == [2, 2]
    assert [r["chief"] for r in first] == [True, False]
    assert [r["step"] for r in first] == [2, 2]
    assert not any("resumed" in err for err in stderrs)
    resumed, stderrs = run_two_workers(CYCLEGAN_WORKER, unpaired, out, 100)
    # Both workers restore the chief's checkpoint, so they resume from the same step and weights.
    assert ["resumed from step 2" in err.splitlines() for err in stderrs] == [True, True]
    assert [r["step"] for r in resumed] == [4, 4]
    assert resumed[0]["nets"] == resumed[1]["nets"] and resumed[0]["optimizers"] == resumed[1]["optimizers"]
    assert resumed[0]["nets"] != first[0]["nets"]
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-4")
    assert json.loads((out / "model_config.json").read_text())["method"] == "cyclegan"
    assert list((out / "logs").iterdir())
