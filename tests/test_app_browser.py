"""nst-app in a real browser: Debian's headless chromium driven by Playwright.

One app serves the module: random-weight VGG19 features for Gatys and a tiny fast net
trained here under its --models_dir. Every test checks that the page made no request
beyond the app (the machines reach no font or CDN service), and the tests that show a tab
save its screenshot into their tmp_path and, when NST_APP_SHOTS names a folder, there.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import urllib.parse

import numpy as np
import portpicker
import pytest
from feedforward_helpers import REPO
from feedforward_helpers import tiny_fast_runs

from nst_tf import images

pytest.importorskip("gradio", reason="the app extra (gradio) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

from nst_tf.app import AppConfig  # noqa: E402  (after the skips: it needs gradio)
from nst_tf.app import ui  # noqa: E402

MAX_SIDE = 96
# Long enough that a cancel lands while it runs, whatever the machine's speed.
LONG_RUN = 1000


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return pathlib.Path(tiny_fast_runs(tmp_path_factory.mktemp("app_models")))


@pytest.fixture(scope="module")
def stylized_by_cli(models_dir, tmp_path_factory):
    """What ``nst-stylize --model`` writes for the sample photo at the app's size; started at
    once so it runs while the app starts."""
    output = tmp_path_factory.mktemp("cli") / "rocket.png"
    argv = [
        sys.executable,
        "-m",
        "nst_tf.cli.stylize",
        f"--model={models_dir / 'fast'}",
        f"--content={images.SAMPLE_CONTENT}",
        f"--output={output}",
        f"--image_size={MAX_SIDE}",
    ]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield proc, output
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(models_dir, stylized_by_cli):
    config = AppConfig(port=portpicker.pick_unused_port(), models_dir=str(models_dir), weights=None, max_side=MAX_SIDE)
    page = ui.launch(ui.App(config), block=False)
    try:
        yield page.local_url
    finally:
        page.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page of the app; fails the test if the page asked anything of another host."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    elsewhere = []
    app_host = urllib.parse.urlparse(server).netloc

    def route(r):
        if urllib.parse.urlparse(r.request.url).netloc in (app_host, ""):
            r.continue_()
        else:
            elsewhere.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    tab = context.new_page()
    tab.goto(server)
    tab.locator("#gatys-run").wait_for()
    yield tab
    context.close()
    assert elsewhere == [], f"the page asked other hosts: {elsewhere}"


def screenshot(page, tmp_path, name, full_page=True):
    """A screenshot of the page; ``full_page=False`` keeps fixed elements (Gradio's toasts) in view."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    folder = os.environ.get("NST_APP_SHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        shutil.copy(path, folder)
    return path


def open_tab(page, name):
    page.get_by_role("tab", name=name).click()


def use_samples(page, prefix):
    page.locator(f"#{prefix}-samples tbody tr").first.click()
    page.locator(f"#{prefix}-content img").wait_for()


def set_number(page, elem_id, value):
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def status(page):
    return page.locator("#gatys-status textarea").input_value()


def wait_for_status(page, pattern):
    page.wait_for_function(
        "pattern => new RegExp(pattern).test(document.querySelector('#gatys-status textarea').value)",
        arg=pattern,
    )
    return status(page)


def shown_pixels(page, elem_id):
    """The decoded pixels of the image the page shows in ``elem_id``."""
    src = page.locator(f"#{elem_id} img").first.get_attribute("src")
    response = page.request.get(urllib.parse.urljoin(page.url, src))
    assert response.ok, src
    return images.decode_image_bytes(response.body(), name=src, min_side=1)


def test_page_loads_with_every_tab(page):
    assert page.title() == "nst_tf"
    for tab, button in (("Trained nets", "#nets-run"), ("Compare", "#compare-run"), ("Gatys", "#gatys-run")):
        open_tab(page, tab)
        page.locator(button).wait_for(state="visible")
    open_tab(page, "Trained nets")
    assert page.locator("#nets-model input").input_value() == "fast (fast)"


def test_fast_net_shows_what_nst_stylize_writes(page, tmp_path, stylized_by_cli):
    open_tab(page, "Trained nets")
    use_samples(page, "nets")
    page.locator("#nets-run").click()
    page.locator("#nets-output img").wait_for()
    shown = shown_pixels(page, "nets-output")
    screenshot(page, tmp_path, "app_nets")

    proc, output = stylized_by_cli
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    expected = images.load_image(output, min_side=1)
    assert shown.shape == expected.shape
    assert max(shown.shape[:2]) == MAX_SIDE
    assert np.abs(shown - expected).max() <= 1.0 / 255 + 1e-6


def test_gatys_preview_streams_then_a_second_run_is_cancelled(page, tmp_path):
    use_samples(page, "gatys")
    set_number(page, "gatys-size", 64)
    set_number(page, "gatys-steps", 20)
    # Every image the output shows, in order, recorded by the page itself.
    page.evaluate(
        """() => {
            window.shown = [];
            const root = document.querySelector('#gatys-output');
            const record = () => {
                const img = root.querySelector('img');
                if (img && img.src && window.shown[window.shown.length - 1] !== img.src) window.shown.push(img.src);
            };
            new MutationObserver(record).observe(root, {subtree: true, childList: true, attributes: true});
        }"""
    )
    page.locator("#gatys-run").click()
    assert wait_for_status(page, "^done 20/20").startswith("done 20/20")
    page.wait_for_function("() => window.shown.length > 0")
    shown = page.evaluate("() => window.shown")
    final = page.locator("#gatys-output img").get_attribute("src")
    assert final == shown[-1]
    assert len(set(shown[:-1])) >= 2, shown
    assert max(shown_pixels(page, "gatys-output").shape[:2]) == 64
    screenshot(page, tmp_path, "app_gatys")

    set_number(page, "gatys-steps", LONG_RUN)
    page.locator("#gatys-run").click()
    wait_for_status(page, f"^step \\d+/{LONG_RUN}")
    page.locator("#gatys-cancel").click()
    text = wait_for_status(page, "^cancelled")
    step = int(re.match(rf"cancelled after step (\d+) of {LONG_RUN}$", text).group(1))
    assert 0 < step < LONG_RUN


def test_text_file_named_jpg_shows_an_error_and_the_app_goes_on(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture\n")
    use_samples(page, "gatys")
    page.locator("#gatys-content input[type=file]").set_input_files(bad)
    page.locator("#gatys-run").click()
    toast = page.get_by_test_id("toast-text")
    toast.wait_for()
    # The toast flies in from transparent: screenshot it once it has arrived.
    page.wait_for_function(
        """el => { for (let e = el; e; e = e.parentElement)
                     if (e.getAnimations().length || getComputedStyle(e).opacity !== '1') return false;
                   return true; }""",
        arg=toast.element_handle(),
    )
    with pytest.raises(images.ImageError) as expected:
        images.decode_image_bytes(bad.read_bytes(), name="photo notes.jpg")
    assert toast.inner_text() == str(expected.value)
    screenshot(page, tmp_path, "app_error", full_page=False)

    use_samples(page, "gatys")
    set_number(page, "gatys-size", 64)
    set_number(page, "gatys-steps", 2)
    page.locator("#gatys-run").click()
    assert wait_for_status(page, "^done 2/2")


def test_compare_shows_each_method_with_its_metrics(page, tmp_path):
    open_tab(page, "Compare")
    use_samples(page, "compare")
    set_number(page, "compare-steps", 3)
    page.locator("#compare-run").click()
    page.locator("#compare-metrics li").nth(1).wait_for()
    lines = page.locator("#compare-metrics li").all_inner_texts()
    assert [line.split(":")[0] for line in lines] == ["Gatys", "fast (fast)"]
    assert all(re.search(r"style [\d.e+-]+, content [\d.e+-]+, SSIM", line) for line in lines), lines
    assert page.locator("#compare-gallery img").count() >= 2
    screenshot(page, tmp_path, "app_compare")
