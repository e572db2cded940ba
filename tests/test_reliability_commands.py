"""Bad models, checkpoints and numbers through every command, as a user meets them (issue 20, items 6-8).

Each case runs a console script in a subprocess on a broken input built once for the module
(tiny nets, random weights) and requires what every error must be: exit status 1, one line
on stderr, no traceback, and nothing written.
"""

import concurrent.futures
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from feedforward_helpers import REPO
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles
from feedforward_helpers import tiny_config

from nst_tf import gatys
from nst_tf import losses
from nst_tf.training import feedforward

VENV_BIN = pathlib.Path(sys.executable).parent
# What a progress bar prints on a pipe: the only other lines a run that fails midway may write.
PROGRESS_LINE = re.compile(r"\S+( \S+)? \[[#.]+\] \d+/\d+ ")
TINY_TRAINING = ["--image_size=32", "--batch_size=2", "--width=0.125", "--num_residual_blocks=1", "--weights=none"]
TINY_GATYS = ["--weights=none", "--image_size=40", "--num_steps=2"]


def truncate(path):
    """Cut a file to half its size, as a full disk or an interrupted copy leaves it."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Paths of the broken inputs, and of the outputs the cases must not write."""
    root = tmp_path_factory.mktemp("bad")
    photos = make_photos(root / "photos", count=2)
    styles = make_styles(root / "styles")
    run = root / "run"
    feedforward.train(tiny_config(photos, styles, run, max_steps=1, checkpoint_every=1))

    def copy_run(name):
        shutil.copytree(run, root / name)
        return root / name

    truncated = copy_run("truncated")
    truncate(next((truncated / "checkpoints").glob("ckpt-1.data-*")))
    shutil.copytree(truncated, root / "truncated_resume")
    (copy_run("list_config") / "model_config.json").write_text("[]\n")
    wide = copy_run("wide")
    description = json.loads((wide / "model_config.json").read_text())
    description["models"]["model"]["config"]["width"] = 0.25
    (wide / "model_config.json").write_text(json.dumps(description))
    (root / "empty_saved_model").mkdir()
    (root / "empty_saved_model" / "saved_model.pb").write_bytes(b"")

    photo = [os.path.join(photos, name) for name in sorted(os.listdir(photos))]
    gatys.save_checkpoint(
        str(root / "npz_truncated"), np.zeros((33, 40, 3), np.float32), scale_index=0, step=1, sizes=[40]
    )
    truncate(root / "npz_truncated" / gatys.CHECKPOINT_FILE)
    # A finished run of the first photo, to be resumed with the second.
    gatys.stylize(
        photo[0],
        styles[0],
        gatys.GatysConfig(
            image_size=40,
            num_steps=2,
            checkpoint_every=1,
            checkpoint_dir=str(root / "first_photo_checkpoint"),
            loss=losses.LossConfig(weights=None),
        ),
    )
    return {
        "root": root,
        "out": root / "out",
        "photo": photo,
        "style": styles,
        "photos": photos,
        "run": run,
        "truncated": truncated,
        "truncated_resume": root / "truncated_resume",
        "list_config": root / "list_config",
        "wide": wide,
        "empty_saved_model": root / "empty_saved_model",
        "npz_truncated": root / "npz_truncated",
        "first_photo_checkpoint": root / "first_photo_checkpoint",
    }


def gatys_args(bad, output, *more):
    return [f"--content={bad['photo'][0]}", f"--style={bad['style'][0]}", f"--output={output}", *TINY_GATYS, *more]


def training_args(bad, output_dir, *more):
    styles = [f"--style={path}" for path in bad["style"]]
    return [*styles, f"--train_dir={bad['photos']}", f"--output_dir={output_dir}", *TINY_TRAINING, *more]


# name: (command, args(bad, out), message pattern, paths under out that must not exist)
CASES = {
    # item 7: models and checkpoints
    "stylize --model=<a file>": (
        "nst-stylize",
        lambda b, o: [f"--model={b['style'][0]}", f"--content={b['photo'][0]}", f"--output={o}/a.png"],
        r"--model: .*: not a folder",
        ["a.png"],
    ),
    "translate --model=<a file>": (
        "nst-translate",
        lambda b, o: [f"--model={b['style'][0]}", f"--input={b['photo'][0]}", f"--output={o}/t"],
        r"--model: .*: not a folder",
        ["t"],
    ),
    "stylize --model=<run with a truncated checkpoint>": (
        "nst-stylize",
        lambda b, o: [f"--model={b['truncated']}", f"--content={b['photo'][0]}", f"--output={o}/b.png"],
        r"ckpt-1: unreadable checkpoint",
        ["b.png"],
    ),
    "stylize --model=<a 0-byte saved_model.pb>": (
        "nst-stylize",
        lambda b, o: [f"--model={b['empty_saved_model']}", f"--content={b['photo'][0]}", f"--output={o}/c.png"],
        r"--model: .*empty_saved_model: unreadable SavedModel",
        ["c.png"],
    ),
    "export model_config.json holding []": (
        "nst-export",
        lambda b, o: ["--model_type=multistyle", f"--checkpoint={b['list_config']}", f"--export_dir={o}/e1"],
        r"model_config.json: not a model description",
        ["e1"],
    ),
    "export a truncated checkpoint": (
        "nst-export",
        lambda b, o: ["--model_type=multistyle", f"--checkpoint={b['truncated']}", f"--export_dir={o}/e2"],
        r"ckpt-1: unreadable checkpoint",
        ["e2"],
    ),
    "export a width mismatch": (
        "nst-export",
        lambda b, o: ["--model_type=multistyle", f"--checkpoint={b['wide']}", f"--export_dir={o}/e3"],
        r"wide: its checkpoint does not match model_config.json",
        ["e3"],
    ),
    "train resuming a truncated checkpoint": (
        "nst-train-multistyle",
        lambda b, o: training_args(b, b["truncated_resume"], "--max_steps=3"),
        r"ckpt-1: unreadable checkpoint",
        [],
    ),
    "stylize --resume from a truncated .npz": (
        "nst-stylize",
        lambda b, o: gatys_args(b, f"{o}/d.png", f"--checkpoint_dir={b['npz_truncated']}", "--resume"),
        r"checkpoint.npz: unreadable checkpoint",
        ["d.png"],
    ),
    # item 6: a checkpoint of another image
    "stylize --resume from another photo's checkpoint": (
        "nst-stylize",
        lambda b, o: [
            f"--content={b['photo'][1]}",
            f"--style={b['style'][0]}",
            f"--output={o}/f.png",
            *TINY_GATYS,
            f"--checkpoint_dir={b['first_photo_checkpoint']}",
            "--checkpoint_every=1",
            "--resume",
        ],
        r"checkpoint.npz: made from another content image",
        ["f.png"],
    ),
    # item 8: weights that are not finite, and losses that stop being finite
    "stylize --content_weight=inf": (
        "nst-stylize",
        lambda b, o: gatys_args(b, f"{o}/g.png", "--content_weight=inf"),
        r"--content_weight: must be a finite number, got inf",
        ["g.png"],
    ),
    "stylize --model=<multi-style> --style_weights=nan,1": (
        "nst-stylize",
        lambda b, o: [
            f"--model={b['run']}",
            f"--content={b['photo'][0]}",
            f"--output={o}/h.png",
            "--style_weights=nan,1",
        ],
        r"--style_weights: must be finite numbers",
        ["h.png"],
    ),
    "stylize --model=<multi-style> --style_weights=inf,1": (
        "nst-stylize",
        lambda b, o: [
            f"--model={b['run']}",
            f"--content={b['photo'][0]}",
            f"--output={o}/i.png",
            "--style_weights=inf,1",
        ],
        r"--style_weights: must be finite numbers",
        ["i.png"],
    ),
    "train --learning_rate=nan": (
        "nst-train-multistyle",
        lambda b, o: training_args(b, f"{o}/j", "--learning_rate=nan"),
        r"--learning_rate: must be a finite number, got nan",
        ["j"],
    ),
    "train-cyclegan --lambda_cycle=inf": (
        "nst-train-cyclegan",
        lambda b, o: [f"--data_dir={b['root']}", f"--output_dir={o}/k", "--lambda_cycle=inf"],
        r"--lambda_cycle: must be a finite number, got inf",
        ["k"],
    ),
    "stylize whose loss overflows": (
        "nst-stylize",
        lambda b, o: gatys_args(b, f"{o}/l.png", "--style_weight=1e39", "--checkpoint_every=1", "--optimizer=adam"),
        r"the loss became (inf|nan) at step 1\b",
        ["l.png", "l_checkpoint/checkpoint.npz"],
    ),
    "train whose loss overflows": (
        "nst-train-multistyle",
        lambda b, o: training_args(b, f"{o}/m", "--style_weight=1e39", "--checkpoint_every=1", "--max_steps=3"),
        r"the loss became (inf|nan) at step 1\b",
        ["m/checkpoints/checkpoint"],
    ),
}


def run_command(command, args):
    return subprocess.run(
        [str(VENV_BIN / command), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def results(bad):
    """Every case's CompletedProcess, run two at a time (each is mostly TensorFlow's start-up)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_command, case[0], case[1](bad, bad["out"])) for name, case in CASES.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_and_exit_1(name, bad, results):
    command, _, pattern, absent = CASES[name]
    proc = results[name]
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-3000:]
    assert proc.returncode == 1, output[-3000:]
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if not PROGRESS_LINE.match(line)]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    for path in absent:
        assert not (bad["out"] / path).exists(), path
