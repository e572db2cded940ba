"""nst_tf.evaluation and nst-eval: each metric against NumPy, their fixed points, scale and set behaviour."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from nst_tf import evaluation
from nst_tf import images
from nst_tf import losses
from nst_tf.errors import NSTError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
LUMA = np.array([0.299, 0.587, 0.114])


def smooth_image(height, width, seed):
    """Sines of 0.5 to 1.5 periods across the image: smooth at every scale the tests use."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 1.5, 3)
        channels.append(0.5 + 0.4 * np.sin(2 * np.pi * fx * x + phase) * np.cos(2 * np.pi * fy * y))
    return np.stack(channels, axis=-1).astype(np.float32)


@pytest.fixture(scope="module")
def config():
    return evaluation.EvalConfig(weights=None, max_side=0)


@pytest.fixture(scope="module")
def extractor(config):
    keras.utils.set_random_seed(0)
    return evaluation.build_extractor(config)


# --- formulas against NumPy ------------------------------------------------------


def np_gram(f):
    flat = f.reshape(f.shape[0], -1, f.shape[-1]).astype(np.float64)
    return np.einsum("bmi,bmj->bij", flat, flat) / flat.shape[1]


def test_gram_distance_is_gatys_style_loss_on_per_position_grams(rng):
    f, s = rng.normal(size=(2, 6, 5, 4)), rng.normal(size=(2, 9, 3, 4)) * 2
    expected = np.mean(np.sum((np_gram(f) - np_gram(s)) ** 2, axis=(1, 2))) / (4 * 4**2)
    assert float(evaluation.gram_distance(f, s)) == pytest.approx(expected, rel=1e-5)


def test_mean_std_distance(rng):
    f, s = rng.normal(size=(1, 6, 5, 4)), rng.normal(size=(1, 4, 7, 4)) * 3 + 1
    mu_f, mu_s = f.mean(axis=(1, 2)), s.mean(axis=(1, 2))
    sd_f, sd_s = f.std(axis=(1, 2)), s.std(axis=(1, 2))
    expected = np.linalg.norm(mu_f - mu_s) + np.linalg.norm(sd_f - sd_s)
    assert float(evaluation.mean_std_distance(f, s)) == pytest.approx(expected, rel=1e-5)


def test_content_distance_and_mse(rng):
    f, p = rng.normal(size=(1, 6, 5, 4)), rng.normal(size=(1, 6, 5, 4))
    assert float(evaluation.content_distance(f, p)) == pytest.approx(np.mean((f - p) ** 2), rel=1e-5)
    a, b = rng.random((20, 16, 3)), rng.random((20, 16, 3))
    assert float(evaluation.mse(a, b)) == pytest.approx(np.mean((a - b) ** 2), rel=1e-5)


def np_ssim(x, y):
    """SSIM of Wang et al. 2004 on single-channel images: 11x11 Gaussian (sigma 1.5), valid windows."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()

    def blur(img):
        rows = np.lib.stride_tricks.sliding_window_view(img, 11, axis=0) @ g
        return np.lib.stride_tricks.sliding_window_view(rows, 11, axis=1) @ g

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    return np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))


def test_ssim_luminance(tiny_image, rng):
    other = np.clip(tiny_image + 0.1 * rng.normal(size=tiny_image.shape), 0, 1)
    expected = np_ssim(tiny_image @ LUMA, other @ LUMA)
    assert float(evaluation.ssim_luminance(tiny_image, other)) == pytest.approx(expected, abs=1e-4)


def test_color_distance_is_the_frechet_distance_of_yuv_gaussians(tiny_image, rng):
    other = rng.random((30, 50, 3)) ** 2
    x, y = images.rgb_to_yuv(tiny_image).reshape(-1, 3), images.rgb_to_yuv(other).reshape(-1, 3)
    cx, cy = np.cov(x.T.astype(np.float64)), np.cov(y.T.astype(np.float64))
    # Tr((Σx Σy)^½) from the eigenvalues of Σx Σy: an independent route to the trace term.
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvals(cx @ cy).real, 0, None)))
    expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(cx + cy) - 2 * cross
    assert evaluation.color_distance(tiny_image, other) == pytest.approx(expected, rel=1e-3)


def test_high_frequency_energy_and_noise_ratio(tiny_image, rng):
    y = tiny_image.astype(np.float64) @ LUMA
    laplacian = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    assert float(evaluation.high_frequency_energy(tiny_image)) == pytest.approx(np.mean(laplacian**2), rel=1e-4)
    grainy = np.clip(tiny_image + 0.05 * rng.normal(size=tiny_image.shape), 0, 1)
    assert float(evaluation.noise_ratio(grainy, tiny_image)) > 2


def np_grid(image, period):
    y = image.astype(np.float64) @ LUMA
    r = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    r = r[: r.shape[0] // period * period, : r.shape[1] // period * period]
    phases = [r[a::period, b::period].mean() for a in range(period) for b in range(period)]
    return np.sqrt(np.mean(np.square(phases)) / np.mean(r**2))


@pytest.mark.parametrize("period", [2, 4])
def test_grid_pattern_against_numpy(tiny_image, rng, period):
    grainy = np.clip(tiny_image + 0.05 * rng.normal(size=tiny_image.shape), 0, 1).astype(np.float32)
    assert evaluation.grid_pattern(grainy, period) == pytest.approx(np_grid(grainy, period), rel=1e-5)


def test_grid_pattern_finds_checkerboards_and_blocks_not_grain(rng):
    y, x = np.mgrid[0:96, 0:128]
    smooth = smooth_image(96, 128, 3)
    checkerboard = np.where((y + x) % 2 == 0, 0.6, 0.4)[..., None] * np.ones(3, np.float32)
    # A pattern that repeats every 4 px, as two stride-2 stages leave, and not every 2.
    blocks = 0.05 * np.where((y % 4 < 2) & (x % 4 < 2), 1.0, -1.0)[..., None].astype(np.float32)
    grain = 0.05 * rng.normal(size=smooth.shape).astype(np.float32)
    assert evaluation.grid_pattern(checkerboard) == pytest.approx(1.0, abs=1e-6)
    assert evaluation.grid_pattern(np.full((32, 32, 3), 0.5, np.float32)) == 0.0
    assert evaluation.grid_pattern(np.clip(smooth + blocks, 0, 1)) > 0.9
    assert evaluation.grid_pattern(np.clip(smooth + blocks, 0, 1), period=2) < 0.1
    # Random detail leaves about period / sqrt(positions): 4 / sqrt(94 * 126) = 0.037.
    assert evaluation.grid_pattern(np.clip(smooth + grain, 0, 1)) < 0.08


def np_kid(x, y):
    def k(a, b):
        return (a @ b / len(a) + 1) ** 3

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_kid_against_numpy_and_on_same_and_different_sets(rng):
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(9, 5)) + 0.5
    assert evaluation.kid(x, y) == pytest.approx(np_kid(x, y), rel=1e-9)
    same = rng.normal(size=(200, 8))
    twin = rng.normal(size=(200, 8))  # another sample of the same distribution
    different = rng.normal(size=(200, 8)) * 1.5 + 0.5
    far = evaluation.kid(same, different)
    assert far > 0.1
    assert abs(evaluation.kid(same, twin)) < 0.05 * far
    # Against itself the unbiased estimate is not exactly 0 (the diagonal is left out once):
    # (sum of off-diagonal kernels) / (n^2 (n-1)) * 2 - 2 (sum of the diagonal) / n^2, small against far.
    assert abs(evaluation.kid(same, same)) < 0.05 * far
    with pytest.raises(NSTError, match="at least 2 images"):
        evaluation.kid(x[:1], y)


def test_pooled_features_average_each_image_over_positions(extractor, tiny_image):
    layer = "block5_conv1"
    pooled = evaluation.pooled_features(extractor, [tiny_image, tiny_image[:40, :32]], layer)
    direct = np.asarray(extractor(tiny_image[np.newaxis])[layer]).mean(axis=(1, 2))[0]
    assert pooled.shape == (2, 512)
    np.testing.assert_allclose(pooled[0], direct, rtol=1e-5, atol=1e-8)


# --- one triple ------------------------------------------------------------------------


def test_identical_images_give_zero_distances_and_unit_ssim(config, extractor, tiny_image):
    other = smooth_image(48, 64, 1)
    untouched = evaluation.evaluate(
        tiny_image, tiny_image, other, reference=tiny_image, config=config, extractor=extractor
    )
    for name in ("content", "content_ratio", "content/block4_conv2", "color_to_content", "reference_mse"):
        assert untouched[name] == pytest.approx(0, abs=1e-6), name
    for name in ("ssim_luminance", "reference_ssim", "noise_ratio", "style_gram_ratio", "style_meanstd_ratio"):
        assert untouched[name] == pytest.approx(1, abs=1e-5), name
    assert untouched["style_gram_ratio/block1_conv1"] == pytest.approx(1, abs=1e-5)
    assert untouched["grid"] == pytest.approx(evaluation.grid_pattern(tiny_image))
    # An output that is the painting, at the painting's size: no style distance left.
    painted = evaluation.evaluate(other, tiny_image, other, config=config, extractor=extractor)
    for name in ("style_gram", "style_gram_ratio", "style_meanstd", "style_meanstd/block5_conv1", "color_to_style"):
        assert painted[name] == pytest.approx(0, abs=1e-5), name
    assert painted["content_ratio"] == pytest.approx(1, abs=1e-5)


def test_evaluate_shrinks_large_outputs_to_max_side(extractor, tiny_image):
    shrunk = evaluation.EvalConfig(weights=None, max_side=32)
    style = smooth_image(48, 64, 1)
    as_is = evaluation.evaluate(tiny_image, tiny_image, style, config=shrunk, extractor=extractor)
    small = images.resize_longest_side(tiny_image, 32)
    expected = evaluation.evaluate(small, tiny_image, style, config=shrunk, extractor=extractor)
    assert as_is == expected


def test_ratios_do_not_change_when_all_three_images_are_resized_together(extractor):
    """The ratios compare distances at the output's scale, so a 2x larger triple gives the same ratios.

    Up to what a CNN cannot give: its 3x3 kernels see a fixed number of pixels
    and its zero padding a fixed border, so features are scale invariant only
    where the image is smooth over a receptive field and the border is a small
    part of the map. With sines of at most 1.5 periods across 128 px, measured
    changes are below 1% for the style ratios; on block3_conv1 (receptive field
    40 px) below 2% for the content ratio, where block4_conv2 (90 px, two
    thirds of the image) moves 7%. The tolerances leave 3x margin.
    """
    config = evaluation.EvalConfig(weights=None, max_side=0, content_layers=("block3_conv1",))
    content, style = smooth_image(128, 96, 1), smooth_image(96, 128, 2)
    output = 0.6 * content + 0.4 * smooth_image(128, 96, 3)

    def doubled(image):
        return images.resize_image(image, (2 * image.shape[0], 2 * image.shape[1]))

    small = evaluation.evaluate(output, content, style, config=config, extractor=extractor)
    large = evaluation.evaluate(doubled(output), doubled(content), doubled(style), config=config, extractor=extractor)
    for name in ("style_gram_ratio", "style_meanstd_ratio"):
        assert large[name] == pytest.approx(small[name], rel=0.03), name
    assert large["content_ratio"] == pytest.approx(small["content_ratio"], rel=0.06)
    assert large["color_to_style"] == pytest.approx(small["color_to_style"], rel=0.01)


def test_eval_config_names_the_bad_flag():
    with pytest.raises(NSTError, match="^--style_layers: "):
        evaluation.EvalConfig(weights=None, style_layers=("no_such_layer", 99))
    with pytest.raises(NSTError, match="^--feature_extractor: "):
        evaluation.EvalConfig(feature_extractor="alexnet")


# --- files -----------------------------------------------------------------------------


def write_images(folder, names, shape, seed):
    rng = np.random.default_rng(seed)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        images.save_image(str(path), rng.random(shape).astype(np.float32))


def test_eval_config_of_a_loss_measures_its_network_and_layers_at_full_size():
    johnson = losses.LossConfig.johnson(weights=None, pooling="avg")
    config = evaluation.EvalConfig.of_loss(johnson)
    assert config.layers() == johnson.layers()  # not the Gatys layers EvalConfig defaults to
    assert (config.feature_extractor, config.weights, config.pooling, config.max_side) == ("vgg16", None, "avg", 0)


def test_median_metrics_of_several_results():
    results = [{"style_gram_ratio": v, "ssim_luminance": 1 - v, "extra": 5.0} for v in (0.3, 0.1, 0.2)]
    assert evaluation.median_metrics(results) == {"style_gram_ratio": 0.2, "ssim_luminance": 0.8}
    assert evaluation.median_metrics(results, ("extra",)) == {"extra": 5.0}
    assert evaluation.median_metrics([]) == {}


def test_folders_match_by_relative_path_then_by_stem(tmp_path):
    write_images(tmp_path / "out", ["a.png", "sub/b.png"], (40, 36, 3), 0)
    write_images(tmp_path / "photos", ["a.jpg", "other/b.png", "sub/c.png"], (40, 36, 3), 1)
    write_images(tmp_path, ["style.png"], (36, 40, 3), 2)
    triples = evaluation.match_files(str(tmp_path / "out"), str(tmp_path / "photos"), str(tmp_path / "style.png"))
    assert [(t.name, os.path.relpath(t.content, tmp_path)) for t in triples] == [
        ("a", "photos/a.jpg"),
        ("sub/b", "photos/other/b.png"),
    ]
    assert {t.style for t in triples} == {str(tmp_path / "style.png")} and triples[0].reference is None
    with pytest.raises(NSTError, match="^--style: no image matching 'a' in "):
        evaluation.match_files(str(tmp_path / "out"), str(tmp_path / "photos"), str(tmp_path / "photos" / "sub"))


def test_manifest_paths_are_relative_to_the_csv(tmp_path):
    (tmp_path / "m.csv").write_text("output,content,style,reference\no.png,c.png,s.png,\nx/o.png,c.png,s.png,r.png\n")
    first, second = evaluation.read_manifest(str(tmp_path / "m.csv"))
    assert (first.output, first.reference) == (str(tmp_path / "o.png"), None)
    assert (second.name, second.reference) == ("x/o.png", str(tmp_path / "r.png"))
    (tmp_path / "bad.csv").write_text("output,photo,style\no.png,c.png,s.png\n")
    with pytest.raises(NSTError, match="columns must be output,content,style"):
        evaluation.read_manifest(str(tmp_path / "bad.csv"))
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00output")
    with pytest.raises(NSTError, match="not a UTF-8 CSV file"):
        evaluation.read_manifest(str(tmp_path / "binary.csv"))


def test_evaluate_files_from_a_manifest_with_kid_over_the_distinct_images(tmp_path):
    write_images(tmp_path, ["o1.png", "o2.png", "o3.png", "c.png", "s1.png", "s2.png"], (40, 36, 3), 0)
    (tmp_path / "m.csv").write_text(
        "output,content,style,reference\no1.png,c.png,s1.png,o1.png\no2.png,c.png,s2.png,\no3.png,c.png,s2.png,\n"
    )
    config = evaluation.EvalConfig(weights=None)
    results, sets = evaluation.evaluate_files(evaluation.read_manifest(str(tmp_path / "m.csv")), config)
    assert [triple.name for triple, _ in results] == ["o1.png", "o2.png", "o3.png"]
    assert results[0][1]["reference_mse"] == 0 and "reference_mse" not in results[1][1]
    # One photo: no KID to the photos; two distinct paintings (s2 counted once) against three outputs.
    assert list(sets) == ["kid_to_style"] and np.isfinite(sets["kid_to_style"])


# --- nst-eval ---------------------------------------------------------------------------


def nst_eval(*args):
    return subprocess.run(
        [sys.executable, "-m", "nst_tf.cli.eval", "--weights=none", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
        timeout=600,
    )


def test_nst_eval_prints_a_table_and_writes_json_and_csv(tmp_path):
    write_images(tmp_path / "out", ["a.png", "b.png"], (40, 36, 3), 0)
    write_images(tmp_path / "photos", ["a.png", "b.png"], (40, 36, 3), 1)
    write_images(tmp_path, ["style.png"], (36, 40, 3), 2)
    done = nst_eval(
        f"--output={tmp_path / 'out'}",
        f"--content={tmp_path / 'photos'}",
        f"--style={tmp_path / 'style.png'}",
        f"--reference={tmp_path / 'out'}",
        f"--json={tmp_path / 'm.json'}",
        f"--csv={tmp_path / 'm.csv'}",
        f"--sheet={tmp_path / 'sheet.png'}",
        "--sheet_cell=48",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(line.startswith("evaluate [") for line in done.stderr.splitlines()), done.stderr  # the progress bar
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["image", "style_gram_ratio", "style_meanstd_ratio", "content_ratio"]
    assert [line.split()[0] for line in lines[1:4]] == ["a", "b", "median"]
    assert lines[4].startswith("kid_to_content (proxy on pooled block5_conv1 features): ")
    assert lines[-1] == f"evaluated 2 image(s) -> {tmp_path / 'm.json'}, {tmp_path / 'm.csv'}, {tmp_path / 'sheet.png'}"
    document = json.loads((tmp_path / "m.json").read_text())
    assert document["config"]["weights"] is None
    assert list(document["sets"]) == ["kid_to_content"]  # one painting: no KID to the paintings
    metrics = document["results"][0]["metrics"]
    assert metrics["reference_mse"] == pytest.approx(0, abs=1e-6) and metrics["reference_ssim"] == pytest.approx(1)
    assert "style_gram/block5_conv1" in metrics
    header, *rows = (tmp_path / "m.csv").read_text().splitlines()
    assert header.startswith("output,content,style,reference,style_gram,") and len(rows) == 2
    sheet = images.load_image(str(tmp_path / "sheet.png"))
    # Two rows of 48 px cells (with their labels), four columns: photo, painting, output, reference.
    assert 2 * 48 < sheet.shape[0] < 2 * 48 + 60 and sheet.shape[1] > 4 * 48


def test_contact_sheet_rows_show_the_images_and_their_metrics(tmp_path):
    write_images(tmp_path, ["o.png", "c.png", "s.png"], (40, 36, 3), 0)
    triple = evaluation.Triple("o", *(str(tmp_path / n) for n in ("o.png", "c.png", "s.png")))
    plain = evaluation.contact_sheet([(triple, {})], cell=40)
    labelled = evaluation.contact_sheet([(triple, {"style_gram_ratio": 0.5, "ssim_luminance": 0.9})], cell=40)
    assert labelled.shape[0] == plain.shape[0] and labelled.shape[1] > plain.shape[1]  # a wider label margin
    # The output's cell (third column, right-aligned at the sheet's edge) holds the output's pixels.
    output = images.letterbox(images.load_image(str(tmp_path / "o.png")), 40)
    cell = labelled[-44:-4, -44:-4]
    assert np.abs(cell - output).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"content": "missing"}, "--content: "),
        ({"style": "not_an_image.txt"}, "not_an_image.txt: "),
        ({"feature_extractor": "alexnet"}, "--feature_extractor"),
        ({"max_side": "16"}, "--max_side: must be 0 (full size) or at least 32"),
        ({"manifest": "m.csv"}, "--manifest: cannot be combined with --output"),
        ({"sheet": "sheet.gif"}, "--sheet: "),
    ],
)
def test_nst_eval_bad_input_is_one_line_and_writes_nothing(tmp_path, bad, message):
    write_images(tmp_path, ["out.png", "photo.png"], (40, 36, 3), 0)
    (tmp_path / "not_an_image.txt").write_text("hello")
    flags = {"output": "out.png", "content": "photo.png", "style": "photo.png", **bad}
    args = [
        f"--{k}={v}" if k in ("feature_extractor", "max_side") else f"--{k}={tmp_path / v}" for k, v in flags.items()
    ]
    done = nst_eval(*args, f"--json={tmp_path / 'm.json'}", f"--csv={tmp_path / 'm.csv'}")
    assert done.returncode == 1
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "m.csv").exists()
