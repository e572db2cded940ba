"""What every training command does on Ctrl-C: finish the step, save a checkpoint, exit with 130."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from feedforward_helpers import REPO
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles
from feedforward_helpers import smooth_image

from nst_tf import images

TINY_FEEDFORWARD = ["--image_size=32", "--batch_size=2", "--width=0.125", "--num_residual_blocks=1", "--weights=none"]
TINY_CYCLEGAN = [
    "--image_size=32",
    "--load_size=36",
    "--n_blocks=1",
    "--ngf=4",
    "--ndf=4",
    "--epochs=1000",
    "--epochs_decay=0",
    "--steps_per_epoch=1000",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("commands")
    rng = np.random.default_rng(0)
    for split, count in (("trainA", 2), ("trainB", 2), ("testA", 1), ("testB", 1)):
        for i in range(count):
            images.save_image(str(root / "unpaired" / split / f"{i}.png"), smooth_image(rng, 40, 48))
    return {
        "photos": make_photos(root / "photos", count=4),
        "styles": make_styles(root / "styles"),
        "unpaired": str(root / "unpaired"),
    }


def command(name, data):
    """The module and flags of a tiny, practically endless run of training command ``name``."""
    styles = [f"--style={path}" for path in data["styles"]]
    if name == "fast":
        return "nst_tf.cli.train_fast", [styles[0], f"--train_dir={data['photos']}", *TINY_FEEDFORWARD]
    if name == "multistyle":
        return "nst_tf.cli.train_multistyle", [*styles, f"--train_dir={data['photos']}", *TINY_FEEDFORWARD]
    return "nst_tf.cli.train_cyclegan", [f"--data_dir={data['unpaired']}", *TINY_CYCLEGAN]


@pytest.mark.parametrize("name", ["fast", "multistyle", "cyclegan"])
def test_ctrl_c_saves_and_exits_with_130(name, data, tmp_path):
    module, args = command(name, data)
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-m", module, *args, f"--output_dir={out}", "--max_steps=1000000", "--checkpoint_every=1"]
    # SIG_DFL in the child: Python ignores Ctrl-C if it starts with SIGINT ignored, as it is
    # under a shell that runs the suite in the background.
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 240
        # Training has started once the first step's checkpoint is there.
        while not (out / "checkpoints" / "checkpoint").exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert stdout == ""
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(rf"interrupted at step (\d+); checkpoint saved in {re.escape(str(out))} \(.*resume\)", last)
    assert match, last
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith(f"ckpt-{match.group(1)}")
