"""kill -9 at random moments of a training run, five times over: each restart says where it resumes,
and the run ends with exactly the variables of an uninterrupted one and no temporaries (issue 20)."""

import os
import re
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
from feedforward_helpers import REPO
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles

KILLS = 5
MAX_STEPS = 40
# Each kill comes once the run has saved the checkpoint of a step drawn this far past the
# last resume, then either a random fraction of a step later (during a step, a save, a
# rename) or in the middle of the next save.
STEPS_BEFORE_KILL = (1, 5)
MAX_DELAY = 0.25  # seconds; about two steps of this run on one core
TINY = [
    "--image_size=32",
    "--batch_size=2",
    "--width=0.125",
    "--num_residual_blocks=1",
    "--weights=none",
    f"--max_steps={MAX_STEPS}",
    "--checkpoint_every=1",
    "--log_every=10",
    "--image_every=0",
]
# What interrupted writes leave: nst_tf's .tmp-<16 hex>-<name>, TensorFlow's ckpt-<N>_temp/
# and checkpoint.tmp<32 hex>.
TEMPORARY = re.compile(r"\.tmp-[0-9a-f]{16}-.+|ckpt-\d+_temp|checkpoint\.tmp[0-9a-f]{32}")


def start(data, output_dir, log):
    argv = [
        sys.executable,
        "-m",
        "nst_tf.cli.train_fast",
        f"--style={data['style']}",
        f"--train_dir={data['photos']}",
        f"--output_dir={output_dir}",
        *TINY,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)


def saved_step(output_dir):
    latest = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def variables(output_dir):
    path = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
    return {name: tf.train.load_variable(path, name) for name, _ in tf.train.list_variables(path)}


def temporaries(output_dir):
    return [
        os.path.join(folder, name)
        for folder, dirs, files in os.walk(output_dir)
        for name in dirs + files
        if TEMPORARY.fullmatch(name)
    ]


def kill_after(run, log, output_dir, step, delay, mid_save):
    """SIGKILL ``run`` once it has saved the checkpoint of ``step``: ``delay`` seconds later,
    or with ``mid_save`` as soon as a save is half done (TensorFlow's ckpt-<N>_temp/ exists)."""
    while saved_step(output_dir) < step:
        assert run.poll() is None, _tail(log)
        time.sleep(0.005)
    if mid_save:
        checkpoints = os.path.join(output_dir, "checkpoints")
        # Polled without sleeping: the folder lives for milliseconds.
        while not any(name.endswith("_temp") for name in os.listdir(checkpoints)) and run.poll() is None:
            pass
    else:
        time.sleep(delay)
    assert run.poll() is None, "the run ended before its kill: make MAX_STEPS larger"
    run.kill()
    run.wait()


def test_kill_9_five_times_then_resume_to_the_uninterrupted_variables(tmp_path):
    data = {"photos": make_photos(tmp_path / "photos", count=4), "style": make_styles(tmp_path / "styles", count=1)[0]}
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    os.makedirs(killed)
    user_files = ["notes.txt", "ckpt-1_temp.txt", ".tmp-mine"]
    for name in user_files:
        open(os.path.join(killed, name), "w", encoding="utf-8").close()
    rng = np.random.default_rng(20)
    with open(tmp_path / "straight.log", "w+b") as straight_log:
        reference = start(data, straight, straight_log)  # alongside: the machine has two cores
        left = []
        resumed_from = 0
        for kill in range(KILLS + 1):
            with open(tmp_path / f"run{kill}.log", "w+b") as log:
                run = start(data, killed, log)
                if kill < KILLS:
                    target = resumed_from + int(rng.integers(*STEPS_BEFORE_KILL, endpoint=True))
                    kill_after(run, log, killed, target, delay=rng.uniform(0, MAX_DELAY), mid_save=rng.random() < 0.5)
                    left.append(len(temporaries(killed)))
                else:
                    assert run.wait(timeout=600) == 0, _tail(log)
                stderr = _tail(log)
            if kill:
                assert f"resumed from step {resumed_from}\n" in stderr, stderr
            resumed_from = saved_step(killed)
        assert reference.wait(timeout=600) == 0, _tail(straight_log)

    print(f"temporaries found after each kill: {left}")
    assert saved_step(killed) == saved_step(straight) == MAX_STEPS
    expected, got = variables(straight), variables(killed)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert temporaries(killed) == []
    for name in user_files:
        assert os.path.exists(os.path.join(killed, name)), name


def _tail(log):
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]
