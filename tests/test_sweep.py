"""nst_tf.sweep: axis parsing, the contact sheet, and nst-sweep end to end."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nst_tf import gatys
from nst_tf import images
from nst_tf import sweep
from nst_tf.errors import NSTError
from nst_tf.losses import LossConfig


def test_parse_axis_uses_the_field_types():
    assert sweep.parse_axis("style_weight:1e2|1e3").values == (100.0, 1000.0)
    layers = sweep.parse_axis("style_layers:0|0,1|block1_conv1")
    assert layers.values == (("0",), ("0", "1"), ("block1_conv1",))
    assert layers.labels == ("style_layers=0", "style_layers=0,1", "style_layers=block1_conv1")
    assert sweep.parse_axis("lbfgs_history:none|10").values == (None, 10)
    assert sweep.parse_axis("jit_compile:true|0").values == (True, False)
    assert sweep.parse_axis("scales:64|32,64").values == ((64,), (32, 64))
    assert sweep.parse_axis(None) == sweep.Axis.single()


@pytest.mark.parametrize(
    "text, match",
    [
        ("nonsense:1|2", "cannot sweep 'nonsense'"),
        ("resume:true", "cannot sweep 'resume'"),
        ("style_weight:1e3|lots", "expected float"),
        ("style_weight", "FIELD:VALUE"),
        ("alpha_beta:0|1e-3", "must be > 0"),
    ],
)
def test_parse_axis_rejects_bad_input(text, match):
    with pytest.raises(NSTError, match=match):
        sweep.parse_axis(text)


def test_alpha_beta_sets_the_style_weight():
    config = gatys.GatysConfig(loss=LossConfig(content_weight=2.0))
    axis = sweep.parse_axis("alpha_beta:1e-3|1e-2")
    assert axis.apply(config, 0).loss.style_weight == pytest.approx(2e3)
    assert axis.apply(config, 1).loss.style_weight == pytest.approx(2e2)


def test_loss_fields_are_swept_inside_the_loss_config():
    config = gatys.GatysConfig(loss=LossConfig(style_weight=5.0), num_steps=7)
    cell = sweep.parse_axis("style_weight:1e2|1e4").apply(config, 1)
    assert cell.loss.style_weight == 1e4 and cell.loss.content_weight == 1.0 and cell.num_steps == 7
    assert sweep.parse_axis("num_steps:3|4").apply(config, 0).loss == config.loss
    with pytest.raises(NSTError, match="cannot sweep 'loss'"):
        sweep.parse_axis("loss:x")


def test_invalid_cell_value_is_reported_by_field():
    axis = sweep.parse_axis("pooling:max|median")
    with pytest.raises(NSTError, match="pooling"):
        axis.apply(gatys.GatysConfig(), 1)


def _tiny_config():
    return gatys.GatysConfig(
        image_size=48,
        num_steps=3,
        loss=LossConfig(
            feature_extractor="vgg16", weights=None, content_layers=("block2_conv2",), style_layers=("block1_conv1",)
        ),
    )


def test_sweep_renders_a_labelled_2x2_grid(tiny_image, rng):
    style = rng.random((40, 40, 3)).astype(np.float32)
    rows = sweep.parse_axis("style_layers:0|0,2")
    cols = sweep.parse_axis("alpha_beta:1e-3|1e-1")
    reports = []
    sheet = sweep.sweep(
        tiny_image,
        style,
        _tiny_config(),
        rows,
        cols,
        progress=lambda done, total, values: reports.append((done, total)),
    )
    cell_h, cell_w = images.longest_side_shape(tiny_image.shape, 48)
    assert sheet.shape[0] > 2 * cell_h and sheet.shape[1] > 2 * cell_w
    assert 0.0 <= sheet.min() and sheet.max() <= 1.0
    assert reports[-1] == (12, 12)
    # The labels are dark text on the white margins.
    assert sheet[:, :8].min() < 0.5


def _write(path, array):
    images.save_image(str(path), array)
    return str(path)


def test_cli_writes_the_sheet(tmp_path, tiny_image, rng):
    content = _write(tmp_path / "content.png", tiny_image)
    style = _write(tmp_path / "style.png", rng.random((40, 40, 3)).astype(np.float32))
    output = tmp_path / "out" / "sheet.png"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    args = [
        sys.executable,
        "-m",
        "nst_tf.cli.sweep",
        f"--content={content}",
        f"--style={style}",
        f"--output={output}",
        "--image_size=48",
        "--num_steps=2",
        "--weights=none",
        "--feature_extractor=vgg16",
        "--content_layers=block2_conv2",
        "--style_layers=block1_conv1",
        "--rows=style_weight:1e2|1e4",
        "--cols=pooling:max|avg",
        "--cell_size=24",
    ]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert str(output) in done.stdout and "2x2 cells" in done.stdout
    with Image.open(output) as sheet:
        assert sheet.size[0] > 2 * 24 and sheet.size[1] > 2 * 24
    assert os.listdir(output.parent) == ["sheet.png"]

    bad = subprocess.run(args[:-3] + ["--rows=colour:red|blue"], env=env, capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    errors = [line for line in bad.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "cannot sweep 'colour'" in errors[0], bad.stderr
    assert "Traceback" not in bad.stderr
