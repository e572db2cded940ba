"""SavedModel / TFLite export: layout, versions, signatures, and round trips outside nst_tf."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from feedforward_helpers import run_command
from feedforward_helpers import write_training_dir
from PIL import Image

from nst_tf import export
from nst_tf import gatys
from nst_tf import images
from nst_tf import inference
from nst_tf import losses
from nst_tf import models
from nst_tf.errors import NSTError

REPO = pathlib.Path(__file__).resolve().parents[1]
VENV_BIN = pathlib.Path(sys.executable).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
# Largest |SavedModel - Keras| on the models' own [0, 1] pixel scale.
ROUND_TRIP_TOL = 1e-5
# Largest |TFLite - SavedModel| on the [0, 255] scale: 1/100 of an 8-bit level.
TFLITE_TOL = 0.01

# Loads each SavedModel with TensorFlow alone and runs one signature on saved inputs.
_LOADER = """
import json, sys
import numpy as np
import tensorflow as tf
for job in json.load(open(sys.argv[1])):
    fn = tf.saved_model.load(job["dir"]).signatures[job["signature"]]
    inputs = dict(np.load(job["inputs"]))
    outputs = fn(**{k: tf.constant(v) for k, v in inputs.items()})
    np.savez(job["outputs"], **{k: v.numpy() for k, v in outputs.items()})
assert not [m for m in sys.modules if m.split(".")[0] == "nst_tf"], "nst_tf was imported"
print("loaded", len(json.load(open(sys.argv[1]))))
"""


def run_in_tensorflow_only_process(tmp_path, jobs):
    """``{name: outputs}`` of each ``name: (SavedModel dir, signature, inputs)`` of ``jobs``, all run by
    :data:`_LOADER` in one fresh process that imports TensorFlow alone; inputs and outputs are
    dicts of arrays, passed through ``.npz`` files in ``tmp_path``."""
    specs = []
    for name, (directory, signature, inputs) in jobs.items():
        np.savez(tmp_path / f"{name}_in.npz", **inputs)
        specs.append(
            {
                "dir": directory,
                "signature": signature,
                "inputs": str(tmp_path / f"{name}_in.npz"),
                "outputs": str(tmp_path / f"{name}_out.npz"),
            }
        )
    (tmp_path / "jobs.json").write_text(json.dumps(specs))
    (tmp_path / "loader.py").write_text(_LOADER)
    run = run_command([sys.executable, tmp_path / "loader.py", tmp_path / "jobs.json"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    # Encoded images come back as object arrays of bytes, which np.load reads only with pickle.
    return {name: dict(np.load(tmp_path / f"{name}_out.npz", allow_pickle=True)) for name in jobs}


GATYS = gatys.GatysConfig(
    optimizer="adam",
    num_steps=3,
    learning_rate=0.02,
    loss=losses.LossConfig(
        weights=None, content_layers=("block2_conv2",), style_layers=("block1_conv1", "block2_conv1")
    ),
)

# In a graph, L-BFGS is tfp's (Hager-Zhang line search); nst-stylize runs it with this config.
GATYS_LBFGS = dataclasses.replace(GATYS, optimizer="lbfgs", lbfgs_line_search="hager_zhang")


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def nets():
    keras.utils.set_random_seed(1)
    fast = models.TransformNet(width=0.125, num_residual_blocks=1)
    multi = models.MultiStyleNet(3, width=0.125, num_residual_blocks=1)
    gen_a2b = models.ResnetGenerator(ngf=4, n_blocks=1)
    gen_b2a = models.ResnetGenerator(ngf=4, n_blocks=1)
    for gen in (gen_a2b, gen_b2a):
        gen(tf.zeros([1, 16, 16, 3]))  # create the weights before checkpointing
    return {"fast": fast, "multistyle": multi, "a2b": gen_a2b, "b2a": gen_b2a}


@pytest.fixture(scope="module")
def extractor():
    return gatys.build_extractor(GATYS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, nets, extractor):
    """One export of every model type; fast and cyclegan go through training dirs."""
    root = tmp_path_factory.mktemp("export")
    fast_run = write_training_dir(root / "fast_run", "fast", {"model": nets["fast"]})
    cycle_run = write_training_dir(
        root / "cycle_run", "cyclegan", {"generator_a2b": nets["a2b"], "generator_b2a": nets["b2a"]}
    )
    out = root / "models"
    paths = {
        "fast": export.export(export.ExportConfig("fast", str(out / "fast"), checkpoint=fast_run)),
        "multistyle": export.export(export.ExportConfig("multistyle", str(out / "multi")), model=nets["multistyle"]),
        "cyclegan": export.export(
            export.ExportConfig("cyclegan", str(out / "cycle"), checkpoint=cycle_run, direction="b2a")
        ),
        "features": export.export(
            export.ExportConfig("features", str(out / "features"), gatys_config=GATYS), model=extractor
        ),
        "gatys": export.export(export.ExportConfig("gatys", str(out / "gatys"), gatys_config=GATYS), model=extractor),
        # Exported with the preview's backtracking search asked for: the graph runs tfp's.
        "gatys_lbfgs": export.export(
            export.ExportConfig(
                "gatys", str(out / "gatys_lbfgs"), gatys_config=dataclasses.replace(GATYS, optimizer="lbfgs")
            ),
            model=extractor,
        ),
    }
    return paths


def test_layout_and_info(exported):
    for model_type, path in exported.items():
        assert os.path.basename(path) == "1"
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        with open(os.path.join(path, export.INFO_FILE), encoding="utf-8") as f:
            info = json.load(f)
        assert info["model_type"] == model_type.removesuffix("_lbfgs")
    assert not [e for e in os.listdir(os.path.dirname(exported["fast"])) if e.startswith(".tmp")]


def test_round_trip_in_tensorflow_only_process(exported, nets, extractor, rng, tmp_path):
    images = (rng.random((2, 20, 28, 3)) * 255).astype(np.float32)
    style = (rng.random((1, 36, 32, 3)) * 255).astype(np.float32)
    weights = np.array([0.5, 0.3, 0.2], np.float32)
    x01 = images / 255.0
    objective = gatys.make_objective(extractor, x01[0], [style[0] / 255.0], GATYS)
    feature_maps = extractor(x01)
    grams = {f"{name}_gram": losses.gram_matrix(f) for name, f in feature_maps.items()}
    total, terms = objective.loss(tf.constant(x01[:1]))
    # (SavedModel, signature, inputs, Keras-side result, pixel scale or None for non-images)
    cases = {
        "fast": ("fast", "stylize_tensor", {"images": images}, {"images": nets["fast"](x01)}, 255.0),
        "multistyle": (
            "multistyle",
            "stylize_tensor",
            {"images": images, "style_weights": weights},
            {"images": nets["multistyle"]((x01, weights))},
            255.0,
        ),
        "cyclegan": (
            "cyclegan",
            "stylize_tensor",
            {"images": images},
            {"images": (nets["b2a"](x01 * 2 - 1) + 1) / 2},
            255.0,
        ),
        "gatys": (
            "gatys",
            "stylize_tensor",
            {"content": images[:1], "style": style},
            {"images": gatys.optimize(objective, tf.constant(x01[:1]), GATYS)},
            255.0,
        ),
        "gatys_lbfgs": (
            "gatys_lbfgs",
            "stylize_tensor",
            {"content": images[:1], "style": style},
            {"images": gatys.optimize(objective, tf.constant(x01[:1]), GATYS_LBFGS)},
            255.0,
        ),
        "features": ("features", "serving_default", {"images": images}, {**feature_maps, **grams}, None),
        "losses": (
            "features",
            "losses",
            {"images": images[:1], "content_images": images[:1], "style_images": style},
            {"total": total, **{k: v for k, v in terms.items() if "/" not in k}},
            None,
        ),
    }
    outputs = run_in_tensorflow_only_process(
        tmp_path,
        {name: (exported[model], signature, inputs) for name, (model, signature, inputs, _, _) in cases.items()},
    )
    for name, (_, _, _, want, scale) in cases.items():
        got = outputs[name]
        assert set(want) <= set(got), name
        for key, value in want.items():
            value = np.asarray(value)
            if scale is not None:  # images: absolute, on the model's [0, 1] scale
                np.testing.assert_allclose(got[key] / scale, value, rtol=0, atol=ROUND_TRIP_TOL, err_msg=name)
            else:  # features, Grams and losses: relative to each tensor's magnitude
                atol = ROUND_TRIP_TOL * max(1.0, float(np.abs(value).max()))
                np.testing.assert_allclose(got[key], value, rtol=ROUND_TRIP_TOL, atol=atol, err_msg=f"{name}/{key}")


def test_saved_model_cli_lists_signatures(exported):
    cli = [str(VENV_BIN / "saved_model_cli"), "show", "--dir", exported["multistyle"], "--all"]
    run = subprocess.run(cli, env=ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    for needle in (
        "signature_def['serving_default']",
        "signature_def['stylize_tensor']",
        "inputs['image_bytes']",
        "inputs['style_weights']",
        "outputs['image_bytes']",
        "inputs['images']",
        "DT_STRING",
    ):
        assert needle in run.stdout


def test_serving_default_is_png_of_stylize_tensor(exported, rng):
    loaded = tf.saved_model.load(exported["fast"])
    image = (rng.random((18, 26, 3)) * 255).astype(np.uint8)
    pngs = loaded.signatures["serving_default"](
        image_bytes=tf.stack([tf.io.encode_png(image), tf.io.encode_jpeg(image)])
    )["image_bytes"].numpy()
    assert [p[:8] for p in pngs] == [b"\x89PNG\r\n\x1a\n"] * 2
    stylize = loaded.signatures["stylize_tensor"]
    want = stylize(images=tf.constant(image[None], tf.float32))["images"].numpy()[0]
    got = tf.io.decode_png(pngs[0]).numpy().astype(np.float32)
    assert got.shape == image.shape
    assert np.abs(got - want).max() <= 0.5 + 1e-3  # rounding to uint8 only


def test_rotated_jpeg_comes_back_upright_as_nst_stylize_gives_it(exported, rng, tmp_path):
    # Stored 64 wide x 40 high; EXIF orientation 6 ("rotate 90 degrees clockwise to display"),
    # as a phone writes a portrait: shown 40 wide x 64 high.
    photo = Image.fromarray((rng.random((40, 64, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "portrait.jpg"
    photo.save(path, exif=exif, quality=90)
    assert images.load_image(str(path)).shape == (64, 40, 3)

    served = tf.saved_model.load(exported["fast"]).signatures["serving_default"](
        image_bytes=tf.constant([path.read_bytes()])
    )["image_bytes"][0]
    served = tf.io.decode_png(served).numpy().astype(np.int32)
    target, _ = inference.stylize_files(
        inference.InferenceConfig(model=exported["fast"], content=str(path), output=str(tmp_path / "stylized.png")),
        progress=False,
    )
    stylized = np.asarray(Image.open(target), np.int32)
    assert served.shape == stylized.shape == (64, 40, 3)
    assert np.abs(served - stylized).max() <= 1  # rounding to uint8 only

    gatys_out = tf.saved_model.load(exported["gatys"]).signatures["serving_default"](
        content_bytes=tf.constant([path.read_bytes()]),
        style_bytes=tf.constant([tf.io.encode_png(np.asarray(photo)[:36, :32]).numpy()]),
    )["image_bytes"][0]
    assert tf.io.decode_png(gatys_out).shape == (64, 40, 3)


def test_max_side_caps_in_graph(tmp_path, nets):
    config = export.ExportConfig("fast", str(tmp_path / "capped"), max_side=16)
    path = export.export(config, model=nets["fast"])
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["stylize_tensor"]
    assert fn(images=tf.zeros([1, 32, 24, 3]))["images"].shape == (1, 16, 12, 3)
    assert fn(images=tf.zeros([1, 12, 8, 3]))["images"].shape == (1, 12, 8, 3)


def test_max_side_resizes_as_nst_stylize_does(rng):
    image = rng.random((37, 50, 3)).astype(np.float32)
    for side in (16, 29):
        capped = export.cap_longest_side(tf.constant(image[None] * 255.0), side)[0].numpy() / 255.0
        np.testing.assert_allclose(capped, images.resize_longest_side(image, side), rtol=0, atol=1e-4)


def test_gatys_model_optimisers():
    info = export.ExportConfig("gatys", "x", gatys_config=dataclasses.replace(GATYS, optimizer="lbfgs"))
    assert info.gatys_config.lbfgs_line_search == "hager_zhang"
    with pytest.raises(NSTError, match="^--optimizer: the in-graph Gatys model runs lbfgs or adam, not adamw$"):
        export.ExportConfig("gatys", "x", gatys_config=dataclasses.replace(GATYS, optimizer="adamw"))
    # The default endpoint runs nst-stylize's Adam steps: 100 left a visible grain.
    default = export.ExportConfig("gatys", "x").gatys_config
    assert (default.optimizer, default.num_steps) == ("adam", gatys.GatysConfig().num_steps)


def test_versions_increase_and_failed_export_leaves_nothing(tmp_path, nets, monkeypatch):
    base = tmp_path / "m"
    for entry in ("1", "7", "notes", ".tmp-8-x"):
        (base / entry).mkdir(parents=True)
    assert export.next_version(str(base)) == 8
    assert export.next_version(str(tmp_path / "missing")) == 1

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError):
        export.export(export.ExportConfig("fast", str(base)), model=nets["fast"])
    assert sorted(os.listdir(base)) == [".tmp-8-x", "1", "7", "notes"]


# TF's own interpreter warns that it moves to ai_edge_litert; it runs the same flatbuffer.
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
@pytest.mark.parametrize("kind", ["fast", "multistyle"])
def test_tflite_matches_saved_model(tmp_path, nets, rng, kind):
    size = 32
    config = export.ExportConfig(kind, str(tmp_path / kind), format="tflite", tflite_size=size)
    path = export.export(config, model=nets[kind])
    interpreter = tf.lite.Interpreter(model_path=os.path.join(path, export.TFLITE_FILE))
    interpreter.allocate_tensors()
    images = (rng.random((1, size, size, 3)) * 255).astype(np.float32)
    feed = {"images": images, "style_weights": np.array([0.1, 0.6, 0.3], np.float32)}
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], feed[detail["name"]])
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    module = export.build_module(export.ExportConfig(kind, str(tmp_path / "unused")), model=nets[kind])
    args = [tf.constant(images)] + ([tf.constant(feed["style_weights"])] if kind == "multistyle" else [])
    want = module.stylize_tensor(*args)["images"].numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TFLITE_TOL


def test_config_validation():
    with pytest.raises(NSTError, match="--format=tflite"):
        export.ExportConfig("cyclegan", "x", format="tflite")
    with pytest.raises(NSTError, match="--model_type"):
        export.ExportConfig("pix2pix", "x")
    with pytest.raises(NSTError, match="--checkpoint"):
        export.export(export.ExportConfig("fast", "x"))


def test_cli_exports_from_training_dir_and_rejects_wrong_method(tmp_path, nets):
    run_dir = write_training_dir(
        tmp_path / "multi_run", "multistyle", {"model": nets["multistyle"]}, style_names=["a", "b", "c"]
    )
    out = tmp_path / "models" / "multi"
    cmd = [str(VENV_BIN / "nst-export"), f"--checkpoint={run_dir}", f"--export_dir={out}"]
    bad = subprocess.run(cmd + ["--model_type=fast"], env=ENV, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("nst-export: error: ") and "not 'fast'" in last
    assert not out.exists() or not os.listdir(out)
    good = subprocess.run(
        cmd + ["--model_type=multistyle", "--max_side=64"], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert good.returncode == 0, good.stderr[-2000:]
    assert good.stdout.strip() == f"exported multistyle model to {out / '1'}"
    info = json.loads((out / "1" / export.INFO_FILE).read_text())
    assert info["style_names"] == ["a", "b", "c"] and info["max_side"] == 64


def _conv_dtypes(saved_model_fn):
    """The element types of every Conv2D in a loaded signature's graph and its functions."""
    graph_def = saved_model_fn.graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return {tf.dtypes.as_dtype(n.attr["T"].type).name for n in nodes if n.op == "Conv2D"}


def test_bfloat16_export_computes_in_bfloat16_and_stays_float32_outside(tmp_path, nets, rng):
    run_dir = write_training_dir(tmp_path / "fast_run", "fast", {"model": nets["fast"]})
    images = tf.constant((rng.random((1, 40, 36, 3)) * 255).astype(np.float32))
    outputs = {}
    for precision in ("float32", "bfloat16"):
        path = export.export(
            export.ExportConfig("fast", str(tmp_path / precision), checkpoint=run_dir, precision=precision)
        )
        fn = tf.saved_model.load(path).signatures["stylize_tensor"]
        assert _conv_dtypes(fn) == {precision}
        outputs[precision] = fn(images=images)["images"]
        info = json.loads((pathlib.Path(path) / export.INFO_FILE).read_text())
        assert info["precision"] == precision
    assert outputs["bfloat16"].dtype == tf.float32
    # bfloat16 keeps 8 significant bits: a few 8-bit levels at most on [0, 255].
    difference = np.abs(outputs["bfloat16"].numpy() - outputs["float32"].numpy())
    assert 0 < difference.mean() < 2.0 and difference.max() < 8.0


def test_precision_validation():
    with pytest.raises(NSTError, match="--precision: must be one of"):
        export.ExportConfig("fast", "x", precision="int8")
    with pytest.raises(NSTError, match="--precision=bfloat16: the TFLite export is float32 only"):
        export.ExportConfig("fast", "x", format="tflite", precision="bfloat16")
