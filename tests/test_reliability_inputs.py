"""Reliability against bad inputs (issue 20, items 1-5 and 11, and part of 7).

No data pipeline spins on a source without a readable image; no command writes
over one of its inputs, lets two outputs collide, decodes a decompression bomb
in the training loader, or finds an unwritable output only after the work;
every refusal is one line on stderr, exit status 1, nothing written.

The commands run as subprocesses (their absl flags clash inside one process),
all the table's runs at once in a module fixture, a few at a time: each run is
mostly TensorFlow's import. Cases that need a folder the process cannot write
run as the ``nobody`` user when the tests run as root (root writes anywhere).
"""

import concurrent.futures
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import NamedTuple
from typing import Optional

import numpy as np
import pytest
import tensorflow as tf
from feedforward_helpers import REPO
from feedforward_helpers import make_photos
from feedforward_helpers import make_styles
from feedforward_helpers import smooth_image
from feedforward_helpers import tiny_config
from feedforward_helpers import write_training_dir
from PIL import Image

from nst_tf import data
from nst_tf import export
from nst_tf import fileio
from nst_tf import gatys
from nst_tf import images
from nst_tf import inference
from nst_tf import sweep
from nst_tf.errors import NSTError
from nst_tf.losses import LossConfig
from nst_tf.models.cyclegan import ResnetGenerator
from nst_tf.training import cyclegan
from nst_tf.training import feedforward as ff

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
GATYS = ["--weights=none", "--feature_extractor=vgg16", "--image_size=48", "--num_steps=2"]
NOBODY = 65534  # the cases that need an unwritable folder run as this user when root runs the tests
# A run that does the work before failing shows a progress bar and a traceback;
# a refusal up front is one line, so this bounds the time only of a broken build.
TIMEOUT = 300


def _save(path, array):
    images.save_image(str(path), array)
    return str(path)


def _write_unreadable(folder):
    """An empty, a truncated and a text ".jpg", as the probe put them in a domain."""
    folder.mkdir(parents=True, exist_ok=True)
    good = images.encode_image(np.full((40, 40, 3), 0.5), format="jpeg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good[:200])
    (folder / "text.jpg").write_text("not an image\n")


def _png_bomb(path, side=8200):
    """A valid 1-bit PNG of side x side pixels (more than images.MAX_PIXELS) that compresses to a few KB."""
    Image.new("1", (side, side)).save(path, format="PNG", optimize=True)
    return path


def _cyclegan_dir(folder):
    """A training output dir holding only a tiny generator_a2b, as a --direction=a2b run leaves it."""
    generator = ResnetGenerator(ngf=4, n_blocks=1, name="generator_a2b")
    return write_training_dir(folder, "cyclegan", {"generator_a2b": generator})


@pytest.fixture(scope="module")
def world():
    """A folder every user can read (the pytest tmp root is root's only): inputs, runs, outputs."""
    root = tempfile.mkdtemp(prefix="nst-reliability-")
    os.chmod(root, 0o755)
    old = os.umask(0o022)
    try:
        yield root
    finally:
        os.umask(old)
        for folder, _, _ in os.walk(root):  # the read-only folders of the table
            os.chmod(folder, 0o755)
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def runs(world):
    """Photos, a style, a fast-net run and its export, a one-direction CycleGAN run."""
    photos = make_photos(os.path.join(world, "photos"), count=3)
    styles = make_styles(os.path.join(world, "styles"), count=1)
    fast = os.path.join(world, "fast")
    ff.train(tiny_config(photos, styles, fast, max_steps=1))
    exported = export.export(
        export.ExportConfig(model_type="fast", checkpoint=fast, export_dir=os.path.join(world, "fast_export"))
    )
    os.makedirs(os.path.join(world, "cyclegan"))
    gan = _cyclegan_dir(pathlib.Path(world, "cyclegan"))
    return {"photos": photos, "style": styles[0], "fast": fast, "fast_export": exported, "cyclegan": gan}


@pytest.fixture
def folder(tmp_path):
    """Three small photos in a folder."""
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png", "sub/c.png"):
        _save(tmp_path / "in" / name, smooth_image(rng, 24, 20))
    return tmp_path / "in"


def _snapshot(path):
    """{relative path: bytes} of everything under ``path``, to prove nothing changed."""
    found = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = f.read()
    return found


def one_line_error(returncode, stderr, expected):
    lines = stderr.strip().splitlines()
    assert returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert expected in lines[0], stderr


# ------------------------------------------------------------------ item 1: no pipeline spins


def _unpaired_config(root, **kwargs):
    return data.UnpairedDataConfig(data_dir=str(root), image_size=32, load_size=36, **kwargs)


def test_cyclegan_domain_without_a_readable_image_fails_fast(tmp_path):
    _write_unreadable(tmp_path / "trainA")
    make_photos(tmp_path / "trainB", count=1)
    config = _unpaired_config(tmp_path)
    for build in (lambda: data.unpaired_counts(config), lambda: data.unpaired_dataset(config, 1)):
        with pytest.raises(NSTError, match=r"^--data_dir: .*trainA: no readable image among the first"):
            build()


def test_cyclegan_subset_of_unreadable_files_fails_fast(tmp_path):
    """--max_train_images=N uses the first N files: readable files after them do not help."""
    _write_unreadable(tmp_path / "trainA")  # empty.jpg, text.jpg, truncated.jpg
    rng = np.random.default_rng(0)
    for name in ("z0.png", "z1.png"):  # sorted after them
        _save(tmp_path / "trainA" / name, smooth_image(rng, 40, 40))
    make_photos(tmp_path / "trainB", count=2)
    with pytest.raises(NSTError, match="trainA: no readable image among the first 3"):
        data.unpaired_dataset(_unpaired_config(tmp_path, max_train_images=3), 1)
    batch = next(iter(data.unpaired_dataset(_unpaired_config(tmp_path, max_train_images=4), 1)))
    assert batch["a"].shape == (1, 32, 32, 3)


def test_cyclegan_trainer_refuses_before_building(tmp_path):
    _write_unreadable(tmp_path / "d" / "trainB")
    make_photos(tmp_path / "d" / "trainA", count=1)
    config = cyclegan.CycleGANConfig(
        output_dir=str(tmp_path / "o"),
        data=data.UnpairedDataConfig(data_dir=str(tmp_path / "d"), image_size=32, load_size=36),
        ngf=4,
        ndf=4,
        n_blocks=1,
        steps_per_epoch=2,
        epochs=1,
        epochs_decay=0,
    )
    with pytest.raises(NSTError, match="trainB: no readable image"):
        cyclegan.train(config)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ item 2: outputs never overwrite inputs


def test_model_run_refuses_its_input_as_output(runs, folder, monkeypatch):
    before = _snapshot(folder)
    monkeypatch.chdir(folder)
    os.symlink(folder / "a.png", folder.parent / "link.png")
    cases = [
        ("a.png", "./a.png"),  # a file, spelt two ways
        ("a.png", str(folder.parent / "link.png")),  # through a symlink
        (str(folder), "."),  # the folder itself
        (str(folder), str(folder / "sub" / "..")),
    ]
    for content, output in cases:
        with pytest.raises(NSTError, match="^--output: .* is the input"):
            inference.stylize_files(inference.InferenceConfig(runs["fast"], content, output=output), progress=False)
    assert _snapshot(folder) == before


def test_translate_refuses_its_input_as_output(runs, folder):
    before = _snapshot(folder)
    for source, output in ((folder, folder), (folder / "a.png", folder), (folder / "sub", folder / "sub")):
        with pytest.raises(NSTError, match="^--output: .* is the input"):
            inference.translate(inference.TranslateConfig(runs["cyclegan"], str(source), str(output)), progress=False)
    assert _snapshot(folder) == before


def test_rerun_into_a_folder_inside_the_content_skips_its_own_outputs(runs, folder):
    out = folder / "stylized"
    for _ in range(2):
        _, count = inference.stylize_files(
            inference.InferenceConfig(runs["fast"], str(folder), output=str(out)), progress=False
        )
        assert count == 3
    assert sorted(_snapshot(out)) == ["a.png", "b.png", os.path.join("sub", "c.png")]


def test_translate_rerun_into_a_subfolder_skips_its_own_outputs(runs, folder):
    out = folder / "sub" / "translated"
    for _ in range(2):
        written = inference.translate(
            inference.TranslateConfig(runs["cyclegan"], str(folder), str(out)), progress=False
        )
        assert len(written) == 3
    assert sorted(_snapshot(out)) == ["a.png", "b.png", os.path.join("sub", "c.png")]


def test_list_images_can_leave_out_a_subfolder(folder, tmp_path):
    os.symlink(folder / "sub", tmp_path / "sub_link")
    everything = images.list_images(folder)
    assert len(everything) == 3
    assert images.list_images(folder, exclude=str(tmp_path / "sub_link")) == everything[:2]
    assert images.list_images(folder, exclude=str(folder / "missing")) == everything


# ------------------------------------------------------------------ item 3: no output collisions


@pytest.fixture
def clashing(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "clash"
    folder.mkdir()
    pictures = {}
    for name, fmt in (("a.jpg", "JPEG"), ("a.png", "PNG"), ("a.bmp", "BMP"), ("b.gif", "GIF")):
        pixels = (smooth_image(rng, 20, 16 + len(pictures)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name, format=fmt)
        pictures[name] = pixels
    return folder


def test_stylized_outputs_of_one_stem_do_not_collide(runs, clashing, tmp_path):
    _, count = inference.stylize_files(
        inference.InferenceConfig(runs["fast"], str(clashing), output=str(tmp_path / "out")), progress=False
    )
    assert count == 4
    # An input keeps its name when its format is an output format; a clashing one keeps its extension in the stem.
    assert sorted(os.listdir(tmp_path / "out")) == ["a.bmp.png", "a.jpg", "a.png", "b.png"]
    for source, output in (("a.jpg", "a.jpg"), ("a.png", "a.png"), ("a.bmp", "a.bmp.png"), ("b.gif", "b.png")):
        src = images.load_image(str(clashing / source), min_side=1)
        out = images.load_image(str(tmp_path / "out" / output), min_side=1)
        assert out.shape == src.shape, (source, output)  # each input's own output (the widths differ)


@pytest.mark.parametrize(
    "fmt, expected",
    [("png", ["a.bmp.png", "a.jpg.png", "a.png", "b.png"]), ("jpg", ["a.bmp.jpg", "a.jpg", "a.png.jpg", "b.jpg"])],
)
def test_translated_outputs_of_one_stem_do_not_collide(runs, clashing, tmp_path, fmt, expected):
    written = inference.translate(
        inference.TranslateConfig(runs["cyclegan"], str(clashing), str(tmp_path / fmt), format=fmt), progress=False
    )
    assert len(written) == 4
    assert sorted(os.listdir(tmp_path / fmt)) == expected


def test_names_that_still_clash_are_refused(runs, clashing, tmp_path):
    shutil.copy(clashing / "a.png", clashing / "a.bmp.png")  # takes the name a.bmp would get
    with pytest.raises(NSTError, match="a.bmp.*a.bmp.png.*same output"):
        inference.stylize_files(
            inference.InferenceConfig(runs["fast"], str(clashing), output=str(tmp_path / "out")), progress=False
        )
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ item 4: the loader's decompression-bomb guard


def test_header_size_of_every_decodable_format():
    rng = np.random.default_rng(0)
    pixels = (rng.random((37, 53, 3)) * 255).astype(np.uint8)
    for fmt, kwargs in (
        ("PNG", {}),
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("GIF", {}),
        ("BMP", {}),
        ("WEBP", {"lossless": True}),
        ("WEBP", {"quality": 80}),
    ):
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format=fmt, **kwargs)
        size = images.encoded_image_size(tf.constant(out.getvalue()))
        assert size.numpy().tolist() == [37, 53], (fmt, kwargs)
    # WebP with an alpha channel is the extended (VP8X) layout.
    out = io.BytesIO()
    Image.fromarray(np.dstack([pixels, pixels[..., :1]]), "RGBA").save(out, format="WEBP")
    assert images.encoded_image_size(tf.constant(out.getvalue())).numpy().tolist() == [37, 53]


def test_decode_image_tensor_refuses_a_bomb_from_its_header(tmp_path):
    bomb = _png_bomb(tmp_path / "bomb.png")
    assert os.path.getsize(bomb) < 100_000
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than the limit of"):
        images.decode_image_tensor(tf.constant(open(bomb, "rb").read()))
    # A JPEG whose frame header claims 60000 x 60000.
    jpeg = bytearray(images.encode_image(np.full((16, 16, 3), 0.5), format="jpeg"))
    sof = 2
    while jpeg[sof + 1] != 0xC0:  # walk the segments to the baseline frame header
        sof += 2 + int.from_bytes(jpeg[sof + 2 : sof + 4], "big")
    jpeg[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than the limit of"):
        images.decode_image_tensor(tf.constant(bytes(jpeg)))


def test_training_loader_skips_a_bomb_and_counts_it(tmp_path):
    photos = tmp_path / "photos"
    make_photos(photos, count=3)
    _png_bomb(photos / "bomb.png")
    config = data.PhotoDataConfig(train_dir=str(photos), image_size=32, seed=0)
    batches = list(data.photo_dataset(config, 2).take(3))  # 6 photos: two epochs
    assert all(b["images"].shape == (2, 32, 32, 3) for b in batches)
    assert sum(int(b["unreadable"].numpy().sum()) for b in batches) == 1


# ------------------------------------------------------------------ item 5: unwritable outputs, found first


def test_check_writable(tmp_path):
    (tmp_path / "file").write_text("x")
    fileio.check_writable(str(tmp_path / "new" / "deeper" / "out.png"), "--output")
    fileio.check_writable(str(tmp_path / "new" / "folder"), "--output_dir", folder=True)
    fileio.check_writable(str(tmp_path), "--output_dir", folder=True)
    assert sorted(os.listdir(tmp_path)) == ["file"]  # nothing created
    with pytest.raises(NSTError, match=r"^--output: .*out.png: .*file is a file, not a folder$"):
        fileio.check_writable(str(tmp_path / "file" / "out.png"), "--output")
    with pytest.raises(NSTError, match=r"^--output_dir: .*file is a file, not a folder$"):
        fileio.check_writable(str(tmp_path / "file"), "--output_dir", folder=True)
    with pytest.raises(NSTError, match=r"^--output: .* is a folder, not a file$"):
        fileio.check_writable(str(tmp_path), "--output")


def test_library_entry_points_check_their_output_first(runs, folder, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is needed")
    inside = str(blocker / "out")
    with pytest.raises(NSTError, match="^--output: .*not a folder"):
        inference.stylize_files(inference.InferenceConfig(runs["fast"], str(folder), output=inside), progress=False)
    with pytest.raises(NSTError, match="^--output: .*not a folder"):
        inference.translate(inference.TranslateConfig(runs["cyclegan"], str(folder), str(blocker)), progress=False)
    with pytest.raises(NSTError, match="^--export_dir: .*not a folder"):
        export.export(export.ExportConfig(model_type="fast", checkpoint=runs["fast"], export_dir=inside))
    with pytest.raises(NSTError, match="^--output_dir: .*not a folder"):
        ff.train(tiny_config(runs["photos"], [runs["style"]], inside, max_steps=1))
    assert blocker.read_text() == "a file where a folder is needed"


# ------------------------------------------------------------------ item 11: messages that say what happened


def test_skipped_files_are_counted_once_not_per_epoch(tmp_path, runs):
    photos = tmp_path / "photos"
    make_photos(photos, count=3)
    (photos / "bad1.jpg").write_text("not an image")
    (photos / "bad2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    # 4 steps of 2 photos: 8 of 3 photos, into the third epoch; every epoch meets both bad files.
    result = ff.train(tiny_config(str(photos), [runs["style"]], tmp_path / "run", max_steps=4))
    assert result.step == 4
    assert result.skipped_files == 2


def test_distinct_count_with_shards_and_a_resumed_start(tmp_path):
    photos = tmp_path / "photos"
    make_photos(photos, count=3)
    (photos / "bad.jpg").write_text("not an image")
    config = data.PhotoDataConfig(train_dir=str(photos), image_size=32, seed=5)
    count = lambda ds, n: sum(int(b["unreadable"].numpy().sum()) for b in ds.take(n))  # noqa: E731
    assert count(data.photo_dataset(config, 1), 9) == 1  # three epochs of the 3 photos
    assert sum(count(data.photo_dataset(config, 1, num_shards=2, shard_index=i), 5) for i in (0, 1)) == 1
    assert count(data.photo_dataset(config, 1, start=4), 6) == 0  # the bad file is in epoch 0, before start 4


def test_translate_names_the_method_of_an_exported_net(runs, folder, tmp_path):
    with pytest.raises(NSTError, match="a 'fast' model; translate takes nst-train-cyclegan runs"):
        inference.translate(inference.TranslateConfig(runs["fast_export"], str(folder), str(tmp_path / "t")))
    assert not (tmp_path / "t").exists()
    gan_export = export.export(
        export.ExportConfig(model_type="cyclegan", checkpoint=runs["cyclegan"], export_dir=str(tmp_path / "gan"))
    )
    with pytest.raises(NSTError, match="a 'cyclegan' model; stylize takes fast or multistyle nets"):
        inference.stylize_files(inference.InferenceConfig(gan_export, str(folder), output=str(tmp_path / "s")))


def test_translate_names_the_generators_a_run_has(runs, folder, tmp_path):
    with pytest.raises(NSTError, match=r"has no generator_b2a \(it has generator_a2b: use --direction=a2b\)"):
        inference.translate(
            inference.TranslateConfig(runs["cyclegan"], str(folder), str(tmp_path / "t"), direction="b2a")
        )


@pytest.mark.parametrize(
    "rows, cols, message",
    [
        ("style_weight:1|2", "style_weight:1e2|1e3", "--cols: style_weight is swept by --rows already"),
        ("style_weight:1|2", "alpha_beta:1e2|1e3", "--cols: alpha_beta sets style_weight, which --rows sweeps"),
        ("alpha_beta:1e2|1e3", "style_weight:1|2", "--cols: style_weight is set by alpha_beta, which --rows sweeps"),
        ("alpha_beta:1e2|1e3", "alpha_beta:1|2", "--cols: alpha_beta is swept by --rows already"),
    ],
)
def test_sweep_refuses_axes_that_override_each_other(rows, cols, message):
    config = gatys.GatysConfig(image_size=32, num_steps=1, loss=LossConfig(weights=None))
    with pytest.raises(NSTError, match="^" + message.replace("(", r"\(")):
        sweep.sweep(
            np.zeros((32, 32, 3)), np.zeros((32, 32, 3)), config, sweep.parse_axis(rows), sweep.parse_axis(cols)
        )


def test_sweep_takes_independent_axes():
    sweep.check_axes(sweep.parse_axis("content_weight:1|2"), sweep.parse_axis("alpha_beta:1e-3|1e-2"))
    sweep.check_axes(sweep.parse_axis("style_layers:0|0,1"), sweep.parse_axis("style_weight:1|2"))
    sweep.check_axes(sweep.parse_axis(None), sweep.parse_axis("style_weight:1|2"))


# ------------------------------------------------------------------ the commands, as users run them


class Case(NamedTuple):
    """One bad run: the module and its flags ({w}: the world folder; {photo}, {style}, {photos},
    {fast}, {fast_export}, {cyclegan}: the fixture's files), the text of its one error line."""

    args: tuple
    expected: str
    as_nobody: bool = False  # needs a folder the process cannot write: as root, run as nobody
    cwd: Optional[str] = None  # relative to the world folder (default: the repository)


GATYS_RUN = ("nst_tf.cli.stylize", "--content={photo}", "--style={style}", *GATYS)
SWEEP_RUN = ("nst_tf.cli.sweep", "--content={photo}", "--style={style}", *GATYS)
TRAIN_FAST = (
    "nst_tf.cli.train_fast",
    "--train_dir={photos}",
    "--style={style}",
    "--weights=none",
    "--image_size=32",
    "--max_steps=1",
    "--width=0.125",
    "--num_residual_blocks=1",
    "--batch_size=1",
)
TRAIN_CYCLEGAN = (
    "nst_tf.cli.train_cyclegan",
    *("--image_size=32", "--load_size=36", "--ngf=4", "--ndf=4", "--n_blocks=1"),
    *("--steps_per_epoch=1", "--epochs=1", "--epochs_decay=0"),
)
TRANSLATE = ("nst_tf.cli.translate", "--model={cyclegan}", "--input={photos}")
EXPORT_FAST = ("nst_tf.cli.export", "--model_type=fast", "--checkpoint={fast}")
BLOCKED = "--output={w}/a_file/out.png"  # under a file

CASES = {
    # item 1
    "cyclegan: a domain of unreadable files": Case(
        (*TRAIN_CYCLEGAN, "--data_dir={w}/bad_domain", "--output_dir={w}/o_gan"),
        "trainA: no readable image among the first",
    ),
    # item 2 (each in a folder of its own copies of the photos)
    "gatys: output is the content, spelt ./": Case(
        (*GATYS_RUN, "--content=photo0.png", "--output=./photo0.png"), "is the input", cwd="victims_gatys"
    ),
    "gatys: output is the style, through a symlink": Case((*GATYS_RUN, "--output={w}/style_link.png"), "is the input"),
    "sweep: output is the content": Case(
        (*SWEEP_RUN, "--content={w}/victims_sweep/photo0.png", "--output={w}/victims_sweep/photo0.png"),
        "is the input",
    ),
    "model: output folder is the content folder": Case(
        ("nst_tf.cli.stylize", "--model={fast}", "--content={w}/victims_model", "--output={w}/victims_model"),
        "is the input",
    ),
    "translate: output folder is the input folder": Case(
        (
            "nst_tf.cli.translate",
            "--model={cyclegan}",
            "--input={w}/victims_translate",
            "--output={w}/victims_translate",
        ),
        "is the input",
    ),
    # item 5
    "gatys: output under a file": Case((*GATYS_RUN, BLOCKED), "not a folder"),
    "gatys: output in a read-only folder": Case(
        (*GATYS_RUN, "--output={w}/read_only/o.png"), "not writable", as_nobody=True
    ),
    "sweep: output under a file": Case((*SWEEP_RUN, BLOCKED), "not a folder"),
    "eval: --json under a file": Case(
        (
            "nst_tf.cli.eval",
            *("--output={photo}", "--content={photo}", "--style={style}"),
            *("--weights=none", "--feature_extractor=vgg16", "--json={w}/a_file/m.json"),
        ),
        "--json: ",
    ),
    "train-fast: output_dir is a file": Case((*TRAIN_FAST, "--output_dir={w}/a_file"), "not a folder"),
    "train-fast: output_dir in a read-only folder": Case(
        (*TRAIN_FAST, "--output_dir={w}/read_only/run"), "not writable", as_nobody=True
    ),
    "train-cyclegan: output_dir under a file": Case(
        (*TRAIN_CYCLEGAN, "--data_dir={w}/gan_data", "--output_dir={w}/a_file/run"), "not a folder"
    ),
    # item 7 (this file's part of it)
    "export: export_dir is a file": Case((*EXPORT_FAST, "--export_dir={w}/a_file"), "not a folder"),
    "export: export_dir read-only": Case((*EXPORT_FAST, "--export_dir={w}/read_only"), "not writable", as_nobody=True),
    "translate: --max_side=2": Case((*TRANSLATE, "--output={w}/o_small", "--max_side=2"), "--max_side=2"),
    "translate: output is an existing file": Case((*TRANSLATE, "--output={w}/a_file"), "not a folder"),
    # item 11
    "sweep: one field on both axes": Case(
        (*SWEEP_RUN, "--output={w}/o_sweep.png", "--rows=style_weight:1|2", "--cols=style_weight:1e2|1e3"),
        "--cols: style_weight is swept by --rows already",
    ),
    "translate: an exported fast net": Case(
        ("nst_tf.cli.translate", "--model={fast_export}", "--input={photo}", "--output={w}/o_t"),
        "a 'fast' model; translate takes nst-train-cyclegan runs",
    ),
}


def _as_nobody():
    """The argv prefix that runs a command as ``nobody`` (root writes into read-only folders), or None.

    setpriv rather than os.setuid in a preexec_fn: it keeps the capabilities until the
    exec, so the interpreter behind a root-only path still starts, then runs unprivileged.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if setpriv else None


def _prepare_world(w, runs):
    """The files the cases name: copies of the photos to be protected, unreadable domains, a file, a read-only folder."""
    for name in ("victims_gatys", "victims_sweep", "victims_model", "victims_translate"):
        shutil.copytree(runs["photos"], os.path.join(w, name))
    _write_unreadable(pathlib.Path(w, "bad_domain", "trainA"))
    make_photos(os.path.join(w, "bad_domain", "trainB"), count=1)
    for domain in ("trainA", "trainB"):
        make_photos(os.path.join(w, "gan_data", domain), count=1)
    with open(os.path.join(w, "a_file"), "w") as f:
        f.write("a file, not a folder\n")
    os.symlink(runs["style"], os.path.join(w, "style_link.png"))
    os.makedirs(os.path.join(w, "read_only"))
    os.chmod(os.path.join(w, "read_only"), 0o555)


@pytest.fixture(scope="module")
def table(world, runs):
    """``({case: (returncode, stderr)}, files before, files after)``, the runs three at a time."""
    _prepare_world(world, runs)
    values = dict(runs, w=world, photo=os.path.join(runs["photos"], "photo0.png"))

    def run(case):
        prefix = _as_nobody() if case.as_nobody else []
        if prefix is None:
            return "skip", "running as root without setpriv: cannot make a folder unwritable"
        try:
            proc = subprocess.run(
                [*prefix, sys.executable, "-m", *(arg.format(**values) for arg in case.args)],
                capture_output=True,
                text=True,
                env=ENV,
                cwd=os.path.join(world, case.cwd) if case.cwd else REPO,
                timeout=TIMEOUT,
            )
            return proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            return None, f"still running after {TIMEOUT} s"

    before = _snapshot(world)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = dict(zip(CASES, pool.map(run, CASES.values())))
    return results, before, _snapshot(world)


@pytest.mark.parametrize("name", list(CASES))
def test_command_refuses_with_one_line(table, name):
    returncode, stderr = table[0][name]
    if returncode == "skip":
        pytest.skip(stderr)
    one_line_error(returncode, stderr, CASES[name].expected)


def test_the_refused_commands_wrote_nothing(table):
    _, before, after = table
    changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
    assert changed == []
