"""The commands as users run them: their flags, the module and script forms, and every recipe in configs/.

The flags each command defined before its flags were generated from the config
dataclasses are frozen below (name -> default as ``--helpfull`` shows it, None
for no default): every command must still define them, with the same defaults.
"""

import configparser
import dataclasses
import fnmatch
import glob
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nst_tf
from nst_tf import config
from nst_tf import gatys
from nst_tf.training import arbitrary
from nst_tf.training import base
from nst_tf.training import cyclegan
from nst_tf.training import feedforward

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

# nst-stylize's flags before the move into nst_tf/cli; nst-sweep has three more.
STYLIZE_FLAGS = {
    "checkpoint_dir": None,
    "checkpoint_every": "0",
    "coarse_steps": None,
    "content": None,
    "content_layers": None,
    "content_loss": "sum",
    "content_weight": "1.0",
    "feature_extractor": "vgg19",
    "image_every": "50",
    "image_size": "512",
    "init": "content",
    "jit_compile": "false",
    "laplacian_weight": "0.0",
    "lbfgs_history": None,
    "lbfgs_line_search": "backtracking",
    "lbfgs_tolerance": None,
    "learning_rate": "0.02",
    "log_dir": None,
    "log_every": "10",
    "lr_gamma": "0.3",
    "lr_patience": "10",
    "lr_schedule": "constant",
    "lr_step_size": "50",
    "model": None,
    "noise_ratio": "0.6",
    "num_steps": "300",
    "optimizer": "lbfgs",
    "output": None,
    "pooling": "max",
    "precision": "float32",
    "preserve_color": "none",
    "resume": "false",
    "scales": "",
    "seed": "0",
    "style": None,
    "style_crop": "false",
    "style_layer_weights": None,
    "style_layers": None,
    "style_scale": "1.0",
    "style_weight": "10000.0",
    "style_weights": None,
    "tv_weight": "300.0",
    "weight_decay": "0.004",
    "weights": "imagenet",
}

# nst-train-fast's flags before the move into nst_tf/cli; nst-train-multistyle has two more.
FEEDFORWARD_FLAGS = {
    "batch_size": "4",
    "checkpoint_every": "1000",
    "content_layers": "",
    "content_weight": "1.0",
    "feature_extractor": "vgg16",
    "image_every": "1000",
    "image_size": "256",
    "learning_rate": "0.001",
    "log_every": "100",
    "lr_halve_every": "0",
    "max_steps": "40000",
    "mixed_precision": "false",
    "num_residual_blocks": "5",
    "output_dir": None,
    "pixel_weight": "0.0",
    "seed": "0",
    "style": "[]",
    "style_layer_weights": "",
    "style_layers": "",
    "style_ramp_steps": "0",
    "style_size": "256",
    "style_weight": "5.0",
    "tfds_data_dir": None,
    "tfds_name": "coco/2017",
    "tfds_split": "train",
    "train_dir": None,
    "tv_weight": "1e-06",
    "warmup_steps": "0",
    "weights": "imagenet",
    "width": "1.0",
}

FROZEN_FLAGS = {
    "stylize": STYLIZE_FLAGS,
    "sweep": {
        **STYLIZE_FLAGS,
        "cell_size": None,
        "cols": None,
        "rows": None,
    },
    "train_fast": FEEDFORWARD_FLAGS,
    "train_multistyle": {
        **FEEDFORWARD_FLAGS,
        "add_style": "[]",
        "base_dir": None,
    },
    "train_cyclegan": {
        "batch_size": "1",
        "beta_1": "0.5",
        "checkpoint_every": "1000",
        "data_dir": None,
        "direction": "both",
        "epochs": "100",
        "epochs_decay": "100",
        "gan_loss": "lsgan",
        "image_every": "1000",
        "image_size": "256",
        "lambda_cycle": "10.0",
        "lambda_identity": "0.5",
        "learning_rate": "0.0002",
        "load_size": "286",
        "log_every": "100",
        "lr_schedule": "linear",
        "max_steps": "1000000000",
        "max_train_images": "0",
        "mixed_precision": "false",
        "n_blocks": "9",
        "ndf": "64",
        "ngf": "64",
        "num_samples": "4",
        "output_dir": None,
        "plateau_factor": "0.1",
        "plateau_patience": "10",
        "pool_size": "50",
        "seed": "0",
        "steps_per_epoch": "0",
        "tfds_data_dir": None,
        "tfds_name": "cycle_gan/monet2photo",
        "upsampling": "transpose",
    },
    # nst-train-arbitrary came after the generated flags: frozen as it first shipped.
    "train_arbitrary": {
        "batch_size": "8",
        "checkpoint_every": "1000",
        "content_dir": None,
        "content_layers": None,
        "content_weight": "1.0",
        "feature_extractor": "vgg19",
        "image_every": "1000",
        "image_size": "256",
        "learning_rate": "0.0001",
        "load_size": "512",
        "lr_decay": "5e-05",
        "max_steps": "160000",
        "mixed_precision": "false",
        "output_dir": None,
        "seed": "0",
        "style_dir": "[]",
        "style_exclude": "",
        "style_statistic": "mean_std",
        "style_weight": "10.0",
        "tfds_name": "coco/2017",
        "units": "huang",
        "weights": "imagenet",
        "width": "1.0",
    },
    "translate": {
        "batch_size": "4",
        "direction": "a2b",
        "format": "png",
        "input": None,
        "max_side": "0",
        "model": None,
        "output": None,
    },
    "export": {
        "checkpoint": None,
        "content_layers": None,
        "content_weight": "1.0",
        "direction": "a2b",
        "export_dir": None,
        "feature_extractor": "vgg19",
        "format": "saved_model",
        "learning_rate": "0.02",
        "max_side": "0",
        "model_type": None,
        "num_steps": "100",
        "pooling": "max",
        "precision": "float32",
        "style_layer_weights": None,
        "style_layers": None,
        "style_weight": "10000.0",
        "tflite_size": "256",
        "tv_weight": "300.0",
        "weights": "imagenet",
    },
    "serve": {
        "file_system_poll_wait_seconds": "1.0",
        "host": "127.0.0.1",
        "max_batch_size": "64",
        "max_concurrent_predictions": "4",
        "max_image_pixels": "16777216",
        "max_request_mb": "32",
        "model_base_path": "export/models",
        "num_versions": "2",
        "port": "8501",
    },
    # nst-eval came after the generated flags: frozen as it first shipped.
    "eval": {
        "content": None,
        "content_layers": None,
        "csv": None,
        "feature_extractor": "vgg19",
        "json": None,
        "manifest": None,
        "max_side": "512",
        "output": None,
        "pooling": "max",
        "reference": None,
        "style": None,
        "style_layers": None,
        "weights": "imagenet",
    },
    # nst-app: frozen as it first shipped.
    "app": {
        "feature_extractor": "auto",
        "gatys_concurrency": None,
        "host": "127.0.0.1",
        "max_megapixels": "40.0",
        "max_side": "1024",
        "models_dir": "runs",
        "port": "7860",
        "weights": "imagenet",
    },
    "demo": {
        "content": "",
        "feature_extractor": "auto",
        "image_size": "256",
        "num_steps": "100",
        "output_dir": "out",
        "style": "",
        "weights": "imagenet",
    },
}
# Defaults that changed on purpose when the flags came to be generated. The
# CycleGAN command showed --image_every=1000 and --max_steps=1000000000 but
# used neither default: an absent --image_every meant "at each epoch end" and
# max_steps only caps a run. Now the flags show CycleGANConfig's own defaults.
# The exported Gatys model's 100 Adam steps left a visible grain; it now runs
# nst-stylize's 300 (docs/pages/export.md).
CHANGED_DEFAULTS = {
    ("train_cyclegan", "image_every"): None,
    ("train_cyclegan", "max_steps"): str(2**62),
    ("export", "num_steps"): "300",
}
EMPTY = ("", "[]", None)  # an empty list default shows as '' or [], a None default not at all

# Runs each command module as ``python -m nst_tf.cli.<command> --helpfull``
# would, in one process: TensorFlow is imported once, and the flags of the
# previous command are removed before the next one defines its own.
HELPFULL = """
import contextlib, io, json, runpy, sys
from absl import flags
from nst_tf import cli
out = {}
for name in sys.argv[1:]:
    for flag in list(flags.FLAGS):
        module = flags.FLAGS.find_module_defining_flag(flag) or ""
        if module.startswith("nst_tf") or "nst_tf/" in module:
            delattr(flags.FLAGS, flag)
    for module in [m for m in sys.modules if m.startswith("nst_tf.cli.")]:
        del sys.modules[module]
    sys.argv = [f"nst_tf/cli/{name}.py", "--helpfull"]
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        runpy.run_module(f"nst_tf.cli.{name}", run_name="__main__", alter_sys=True)
    out[name] = text.getvalue()
out["_start_up_imports"] = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow_probability", "tf_keras"})
print(json.dumps(out))
"""
FLAG_LINE = re.compile(r"^  (?:-\S+,)?--(?:\[no\])?(\w+):")
DEFAULT_LINE = re.compile(r"^    \(default: '(.*)'\)$")


def own_flags(helpfull):
    """``{flag: default or None}`` listed under nst_tf's modules in a --helpfull text."""
    found, ours, current = {}, False, None
    for line in helpfull.split("\nflags:\n", 1)[1].splitlines():
        if line and not line.startswith(" "):  # a module heading: a name, or the main script's path
            ours, current = line.startswith("nst_tf") or "nst_tf/" in line, None
        elif ours and FLAG_LINE.match(line):
            current = FLAG_LINE.match(line).group(1)
            found[current] = None
        elif ours and current and DEFAULT_LINE.match(line):
            found[current] = DEFAULT_LINE.match(line).group(1)
    return found


@pytest.fixture(scope="module")
def helpfull():
    done = subprocess.run(
        [sys.executable, "-c", HELPFULL, *FROZEN_FLAGS], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", list(FROZEN_FLAGS))
def test_helpfull_lists_the_flags_it_listed_before(helpfull, command):
    listed = own_flags(helpfull[command])
    assert sorted(set(FROZEN_FLAGS[command]) - set(listed)) == []
    for name, default in FROZEN_FLAGS[command].items():
        default = CHANGED_DEFAULTS.get((command, name), default)
        if default in EMPTY:
            assert listed[name] in EMPTY, name
        else:
            assert listed[name] == default, name
    assert "(no help available)" not in helpfull[command]


def test_no_command_imports_tensorflow_probability_to_start(helpfull):
    """Imported at start-up, tensorflow-probability (and the tf_keras it pulls in) made a command
    that stops at a missing file take 1.2x the wall time and 40 MiB more; only the hager_zhang
    line search needs it, and imports it when it runs."""
    assert helpfull["_start_up_imports"] == []


def test_a_command_lists_its_own_flags_under_its_name(helpfull):
    """Generated flags belong to the command module (its key flags, shown by --help), not to nst_tf.config."""
    text = helpfull["train_cyclegan"]
    assert re.search(r"\n\S*nst_tf/cli/train_cyclegan\.py:\n  --batch_size:", text)
    assert "\nnst_tf.config:" not in text and "\nnst_tf.cli.training:" not in helpfull["train_fast"]


def test_the_library_namespace_holds_no_commands():
    for old in (
        "stylize",
        "export_model",
        "serve",
        "demo",
        "train_fast",
        "train_multistyle",
        "train_cyclegan",
        "training.flags",
        "translate",
    ):
        assert importlib.util.find_spec(f"nst_tf.{old}") is None, old
    from nst_tf import inference  # pylint: disable=import-outside-toplevel
    from nst_tf import sweep  # pylint: disable=import-outside-toplevel

    for module in (sweep, inference):
        assert not {"main", "run", "FLAGS"} & set(vars(module)), module.__name__
    assert nst_tf.stylize is gatys.stylize


def test_console_scripts_run_the_cli_modules():
    setup = configparser.ConfigParser()
    setup.read(os.path.join(REPO, "setup.cfg"))
    lines = setup["options.entry_points"]["console_scripts"].strip().splitlines()
    scripts = dict(line.split(" = ") for line in lines)
    assert sorted(scripts) == sorted(f"nst-{name.replace('_', '-')}" for name in FROZEN_FLAGS if name != "demo")
    for script, target in scripts.items():
        module = f"nst_tf.cli.{script[4:].replace('-', '_')}"
        assert target == f"{module}:run"
        assert os.path.isfile(os.path.join(REPO, *module.split(".")) + ".py")


def test_script_path_with_a_shipped_flagfile(tmp_path):
    """``python nst_tf/cli/train_cyclegan.py --flagfile=configs/cyclegan_quick.flags``, shrunk to one step."""
    rng = np.random.default_rng(0)
    for split in ("trainA", "trainB", "testA", "testB"):
        folder = tmp_path / "data" / split
        os.makedirs(folder)
        for i in range(2):
            Image.fromarray((rng.random((36, 40, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "nst_tf/cli/train_cyclegan.py",
            "--flagfile=configs/cyclegan_quick.flags",
            f"--data_dir={tmp_path / 'data'}",
            f"--output_dir={out}",
            "--image_size=32",
            "--load_size=36",
            "--n_blocks=1",
            "--ngf=4",
            "--ndf=4",
            "--epochs=1",
            "--epochs_decay=0",
            "--steps_per_epoch=1",
            "--num_samples=1",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("step 1: total=") and done.stdout.strip().endswith(f"model in {out}")
    saved = (out / base.FLAGS_FILE).read_text().split()
    assert "--n_blocks=1" in saved  # from the command line
    assert "--checkpoint_every=100" in saved  # from the flagfile
    assert "--lambda_cycle=10.0" in saved  # a default
    assert not any(flag.startswith(("--helpfull", "--flagfile")) for flag in saved)


# Each recipe in configs/ -> the configs it loads into, and the command flags
# (not config fields) it may hold. The feed-forward recipes hold the fields of
# two configs, the TrainConfig and the FeedForwardConfig.
def _other_flags(cls):
    return tuple(leaf.name for leaf in config.leaves(cls))


RECIPES = {
    # (config class, the command's own flags in the file, fields the user gives on the command line)
    "gatys_*.flags": [(gatys.GatysConfig, ("rows", "cols", "output"), {})],
    "fast_*.flags": [(feedforward.FeedForwardConfig, (), {"style_images": ("painting.jpg",)})],
    "multistyle_*.flags": [
        (feedforward.FeedForwardConfig, (), {"style_images": ("a.jpg", "b.jpg"), "multistyle": True})
    ],
    "cyclegan_*.flags": [(cyclegan.CycleGANConfig, (), {})],
    "arbitrary_*.flags": [(arbitrary.ArbitraryConfig, (), {})],
}


def recipe_flags(path):
    """``{flag: [values]}`` of a flagfile, read as plain text."""
    found = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("--"):
                name, _, value = line[2:].partition("=")
                found.setdefault(name, []).append(value)
    return found


def expected_value(leaf, values):
    """The field value a flag's text means, by the field's type."""
    if leaf.kind is tuple:
        items = values if leaf.field.metadata.get("multi") else values[-1].split(",")
        return tuple(leaf.element(v) for v in items)
    text = values[-1]
    if leaf.optional and text.lower() == "none":
        return None
    if leaf.kind is bool:
        return text.lower() in ("true", "1")
    return leaf.kind(text)


def field_value(instance, path):
    for name in path.split("."):
        instance = getattr(instance, name)
    return instance


def test_every_recipe_loads_into_its_configs_with_the_values_in_the_file():
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "*.flags")))
    assert len(paths) >= 10
    for path in paths:
        pattern = [p for p in RECIPES if fnmatch.fnmatch(os.path.basename(path), p)]
        assert len(pattern) == 1, f"{path}: add it to RECIPES"
        in_file = recipe_flags(path)
        checked = set()
        for cls, ignore, given in RECIPES[pattern[0]]:
            # A recipe that names its paintings needs none from the command line.
            if "style" in in_file:
                given = {k: v for k, v in given.items() if k != "style_images"}
            loaded = config.from_flagfile(cls, path, ignore=ignore, **given)
            assert isinstance(loaded, cls)
            for leaf in config.leaves(cls):
                if leaf.name in in_file:
                    assert field_value(loaded, leaf.path) == expected_value(leaf, in_file[leaf.name]), (
                        f"{path}: --{leaf.name}"
                    )
                    checked.add(leaf.name)
        assert checked == set(in_file) - {"rows", "cols", "output"}, path


def test_a_recipe_loads_with_overrides_and_rejects_unknown_flags(tmp_path):
    path = os.path.join(REPO, "configs", "gatys_paper.flags")
    paper = config.from_flagfile(gatys.GatysConfig, path, image_size=256)
    assert (paper.loss.pooling, paper.init, paper.image_size, paper.num_steps) == ("avg", "noise", 256, 500)
    assert paper.loss.style_layer_weights == (0.2,) * 5 and paper.loss.weights == "imagenet"
    with pytest.raises(nst_tf.NSTError, match="not flags of GatysConfig: --rows="):
        config.from_flagfile(gatys.GatysConfig, os.path.join(REPO, "configs", "gatys_fig3_sweep.flags"))
    with pytest.raises(nst_tf.NSTError, match="--output_dir: required"):
        config.from_flagfile(cyclegan.CycleGANConfig, path, ignore=_other_flags(gatys.GatysConfig))


def test_the_multistyle_cpu_recipe_is_the_single_style_cpu_recipe_for_three_paintings():
    # multistyle_cpu.flags says it is fast_cpu.flags's net, data and loss for three paintings,
    # trained longer; each file spells its settings out so that it reads alone, and this keeps
    # them in step.
    def load(name, **given):
        path = os.path.join(REPO, "configs", name)
        return dataclasses.asdict(config.from_flagfile(feedforward.FeedForwardConfig, path, **given))

    single = load("fast_cpu.flags", style_images=("a.jpg",))
    multi = load("multistyle_cpu.flags", style_images=("a.jpg", "b.jpg", "c.jpg"), multistyle=True)
    differ = {"style_images", "multistyle", "output_dir", "max_steps"}
    assert {k for k in single if single[k] != multi[k]} == differ
    assert multi["max_steps"] > single["max_steps"]
