"""nst-stylize and the demo as the user runs them: subprocesses, flagfiles, exit codes.

Script modules define absl flags on import, so they only run in subprocesses
here: importing several tools into the test process would clash on flag names.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nst_tf import images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY = ["--weights=none", "--image_size=48", "--num_steps=2"]


def messages(stderr):
    return stderr.strip().splitlines()


def tool(module, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=ENV, cwd=cwd or REPO, timeout=600
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64] / 64.0
    images.save_image(folder / "photo.png", np.stack([x, y, 0.5 * (x + y)], -1))
    images.save_image(folder / "art.png", rng.random((40, 40, 3)))
    (folder / "notes.jpg").write_text("this is not an image\n")
    return folder


def test_stylize_writes_output_with_flagfile(inputs, tmp_path):
    flagfile = tmp_path / "quick.flags"
    flagfile.write_text("# a user's flagfile\n--optimizer=adam\n--learning_rate=0.05\n")
    output = tmp_path / "result.png"
    proc = tool(
        "nst_tf.cli.stylize",
        f"--flagfile={flagfile}",
        f"--content={inputs / 'photo.png'}",
        f"--style={inputs / 'art.png'}",
        f"--style={inputs / 'art.png'}",
        "--style_weights=0.5,0.5",
        f"--output={output}",
        *TINY,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{output} 48x36 ")
    assert images.load_image(output).shape == (36, 48, 3)
    assert "Traceback" not in proc.stderr


BAD_INPUTS = {
    "missing file": (["--content={d}/missing.jpg"], "missing.jpg: no such file"),
    "not an image": (["--content={d}/notes.jpg"], "notes.jpg: "),
    "bad value": (["--noise_ratio=2"], "--noise_ratio: must be in [0, 1]"),
    "bad layer": (["--style_layers=block1_conv1,99"], "layer index 99 out of range"),
    "bad output": (["--output={out}.gif"], "--output: "),
    "too small": (["--scales=16"], "--scales: 16 px makes the content 16x12"),
    "bad enum": (["--optimizer=sgd"], "--optimizer"),
}


@pytest.fixture(scope="module")
def bad_runs(inputs, tmp_path_factory):
    """Every bad-input run, started at once: each one is mostly TensorFlow's import."""
    runs = {}
    for case, (args, _) in BAD_INPUTS.items():
        folder = tmp_path_factory.mktemp("bad")
        output = folder / "result.png"
        argv = [
            f"--content={inputs / 'photo.png'}",
            f"--style={inputs / 'art.png'}",
            f"--output={output}",
            *TINY,
            *(a.format(d=inputs, out=output) for a in args),
        ]
        runs[case] = (
            folder,
            subprocess.Popen(
                [sys.executable, "-m", "nst_tf.cli.stylize", *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
                cwd=REPO,
            ),
        )
    results = {}
    for case, (folder, proc) in runs.items():
        _, stderr = proc.communicate(timeout=600)
        results[case] = (folder, proc.returncode, stderr)
    return results


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(bad_runs, case):
    folder, returncode, stderr = bad_runs[case]
    assert returncode == 1
    lines = messages(stderr)
    assert len(lines) == 1 and BAD_INPUTS[case][1] in lines[0], stderr
    assert "Traceback" not in stderr
    assert os.listdir(folder) == []


def test_shipped_flagfiles_parse_into_configs():
    script = (
        "import json, sys\n"
        "import importlib\n"
        "stylize = importlib.import_module('nst_tf.cli.stylize')\n"
        "out = {}\n"
        "for args in sys.argv[1:]:\n"
        "    stylize.FLAGS.unparse_flags()\n"
        "    stylize.FLAGS(['nst-stylize', *args.split(), '--content=c.jpg', '--style=s.jpg'])\n"
        "    c = stylize.config_from_flags('o.png')\n"
        "    out[args] = [c.sizes(), c.scale_steps(), c.loss.pooling, c.init, c.checkpoint_dir]\n"
        "print(json.dumps(out))\n"
    )
    hq = "--flagfile=configs/gatys_hq_multiscale.flags"
    cases = [
        "--flagfile=configs/gatys_paper.flags",
        "--flagfile=configs/gatys_preview.flags",
        hq,
        hq + " --coarse_steps=50",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", script, *cases], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    configs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert configs[cases[0]] == [[512], [500], "avg", "noise", None]
    assert configs[cases[1]] == [[256], [100], "max", "content", None]
    assert configs[hq] == [[256, 512, 1024], [200, 200, 200], "max", "content", "o_checkpoint"]
    assert configs[cases[3]][1] == [50, 50, 200]


@pytest.mark.integration
def test_demo_offline_detects_vgg16_weights(assets, hed_weights, tmp_path):
    content = assets / "images/content/chicago.jpg"
    style = assets / "images/style/starry_night.jpg"
    proc = tool(
        "nst_tf.cli.demo",
        f"--content={content}",
        f"--style={style}",
        f"--weights={hed_weights}",
        f"--output_dir={tmp_path}",
        "--image_size=64",
        "--num_steps=3",
    )
    assert proc.returncode == 0, proc.stderr
    assert " vgg16 " in proc.stdout
    assert images.load_image(tmp_path / "chicago_starry_night.png").shape[1] == 64
