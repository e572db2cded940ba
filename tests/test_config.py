"""nst_tf.config: flags generated from dataclass fields, and configs built back from them."""

import dataclasses
import subprocess
import sys
from typing import Optional
from typing import Sequence
from typing import Union

import pytest
from absl import flags

from nst_tf import config
from nst_tf.config import option
from nst_tf.errors import NSTError

MODES = ("fast", "slow")


@dataclasses.dataclass
class Inner:
    rate: float = option(0.5, "A rate.", min=0.0)
    layers: Optional[Sequence[Union[str, int]]] = option(None, "Layers.")
    mode: str = option("fast", "Mode.", choices=MODES)

    def __post_init__(self):
        config.check_choices(self)


@dataclasses.dataclass
class Outer:
    name: str = option(help="Name (required).")
    inner: Inner = dataclasses.field(default_factory=lambda: Inner(rate=0.25))
    sizes: Sequence[int] = option((), "Sizes.")
    weights_per_layer: Optional[Sequence[float]] = option(None, "Weights.")
    verbose: bool = option(False, "Verbose.")
    steps: Optional[int] = option(None, "Steps.", min=1)
    weights: Optional[str] = option("imagenet", "Weights file or none.")
    style_images: Sequence[str] = option((), "Style image (repeat).", flag="style", multi=True)


@dataclasses.dataclass
class Renamed:
    speed: str = option("fast", "Speed.", choices=MODES, flag="tempo")

    def __post_init__(self):
        config.check_choices(self)


def test_check_choices_names_the_flag_and_the_allowed_values():
    assert Inner(mode="slow").mode == "slow"
    with pytest.raises(NSTError, match=r"^--mode: must be one of fast, slow, got 'medium'$"):
        Inner(mode="medium")
    with pytest.raises(NSTError, match=r"^--tempo: must be one of fast, slow, got 'andante'$"):
        Renamed(speed="andante")


@dataclasses.dataclass
class Weighted:
    gain: float = option(1.0, "A weight.", flag="alpha")
    mix: Optional[Sequence[float]] = option(None, "Blend weights.")
    steps: int = option(3, "Steps.")
    mode: str = option("fast", "Mode.", choices=MODES)

    def __post_init__(self):
        config.check_fields(self)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"gain": float("inf")}, r"^--alpha: must be a finite number, got inf$"),
        ({"gain": float("nan")}, r"^--alpha: must be a finite number, got nan$"),
        ({"mix": (float("nan"), 1.0)}, r"^--mix: must be finite numbers, got nan,1.0$"),
        ({"mix": (1.0, float("-inf"))}, r"^--mix: must be finite numbers, got 1.0,-inf$"),
        ({"mode": "medium"}, r"^--mode: must be one of fast, slow"),
    ],
)
def test_check_fields_refuses_non_finite_floats_and_unknown_choices(settings, message):
    with pytest.raises(NSTError, match=message):
        Weighted(**settings)


def test_check_fields_passes_finite_numbers_and_none():
    assert Weighted(gain=-1e300, mix=None).gain == -1e300
    assert Weighted(mix=(0.0, 2.5)).mix == (0.0, 2.5)


def parse(argv, default=Outer, **kwargs):
    values = flags.FlagValues()
    config.define_flags(default, values, **kwargs)
    values(["prog", *argv])
    return values


def test_leaves_flatten_nested_configs_with_the_parents_defaults():
    values = parse([])
    assert values["rate"].default == 0.25  # Outer's default_factory, not Inner's 0.5
    assert values["mode"].default == "fast" and values["mode"].parser.enum_values == list(MODES)
    assert values["layers"].default is None and values["sizes"].default == []
    assert values["weights"].default == "imagenet" and values["steps"].default is None
    assert values["name"].default is None
    assert values["style"].default == [] and "style_images" not in values
    assert values["rate"].help == "A rate."
    paths = [leaf.path for leaf in config.leaves(Outer)]
    assert paths[:4] == ["name", "inner.rate", "inner.layers", "inner.mode"]


def test_from_flags_converts_types():
    values = parse(
        [
            "--name=n",
            "--rate=2",
            "--layers=block1_conv1,7",
            "--mode=slow",
            "--sizes=64,128",
            "--weights_per_layer=0.5,1e3",
            "--verbose",
            "--steps=3",
            "--weights=NONE",
            "--style=a.jpg",
            "--style=b,c.jpg",
        ]
    )
    got = config.from_flags(Outer, values)
    assert got == Outer(
        name="n",
        inner=Inner(rate=2.0, layers=("block1_conv1", "7"), mode="slow"),
        sizes=(64, 128),
        weights_per_layer=(0.5, 1000.0),
        verbose=True,
        steps=3,
        weights=None,
        style_images=("a.jpg", "b,c.jpg"),
    )
    assert isinstance(got.sizes[0], int) and isinstance(got.inner.rate, float)


def test_empty_lists_and_defaults():
    got = config.from_flags(Outer, parse(["--name=n", "--layers=", "--sizes="]))
    assert got.inner.layers is None and got.sizes == ()  # Optional -> None, plain -> ()
    assert got.inner == Inner(rate=0.25) and got.weights == "imagenet"


def test_bad_values_fail_with_the_flag_name():
    with pytest.raises(NSTError, match=r"--sizes: expected comma-separated integers, got '64,big'"):
        config.from_flags(Outer, parse(["--name=n", "--sizes=64,big"]))
    with pytest.raises(NSTError, match="--name: required"):
        config.from_flags(Outer, parse([]))
    with pytest.raises(flags.IllegalFlagValueError):
        parse(["--mode=medium"])
    with pytest.raises(flags.IllegalFlagValueError):
        parse(["--rate=-1"])  # min=0.0
    with pytest.raises(flags.IllegalFlagValueError):
        parse(["--steps=0"])


def test_instance_defaults_exclude_only_and_help_overrides():
    default = Outer(name="base", inner=Inner(rate=0.75, mode="slow"), sizes=(8,))
    values = parse(["--sizes=16"], default, exclude=("inner.mode", "style"), help_overrides={"rate": "Another help."})
    assert values["name"].default == "base" and values["rate"].default == 0.75
    assert "mode" not in values and "style" not in values and values["rate"].help == "Another help."
    got = config.from_flags(default, values, exclude=("inner.mode", "style"))
    assert got.inner.mode == "slow" and got.sizes == (16,)  # excluded leaves keep the instance's value
    only = parse([], Outer, only=("inner", "verbose"))
    assert sorted(flag for flag in only) == ["layers", "mode", "rate", "verbose"]


def test_overrides_by_field_or_flag_name_and_replace():
    values = parse(["--name=n"])
    got = config.from_flags(Outer, values, mode="slow", sizes=(1,))
    assert got.inner.mode == "slow" and got.sizes == (1,)
    changed = config.replace(got, rate=0.1, name="m")
    assert changed.inner == Inner(rate=0.1, mode="slow") and changed.name == "m"
    assert got.inner.rate == 0.25  # the original is unchanged
    with pytest.raises(NSTError, match="--mode"):
        config.replace(got, mode="medium")  # the rebuilt nested config validates
    with pytest.raises(TypeError, match="'colour' names no field"):
        config.replace(got, colour="red")


@dataclasses.dataclass
class Clash:
    rate: float = 1.0
    inner: Inner = dataclasses.field(default_factory=Inner)


@dataclasses.dataclass
class Unsupported:
    table: dict = dataclasses.field(default_factory=dict)


def test_definition_fails_loudly():
    with pytest.raises(ValueError, match=r"fields rate and inner\.rate both make the flag --rate"):
        config.define_flags(Clash, flags.FlagValues())
    config.define_flags(Clash, flags.FlagValues(), exclude=("inner.rate",))  # resolved
    with pytest.raises(ValueError, match="'inner.size' is no field of Outer"):
        config.define_flags(Outer, flags.FlagValues(), exclude=("inner.size",))
    with pytest.raises(ValueError, match="help_overrides: no flags size"):
        config.define_flags(Outer, flags.FlagValues(), help_overrides={"size": "?"})
    with pytest.raises(TypeError, match="Unsupported.table"):
        config.define_flags(Unsupported, flags.FlagValues())


def test_from_flagfile_reads_a_recipe(tmp_path):
    recipe = tmp_path / "recipe.flags"
    recipe.write_text("# a recipe\n--name=r\n--mode=slow\n--style=x.jpg\n--style=y.jpg\n--output=o.png\n")
    with pytest.raises(NSTError, match=r"not flags of Outer: --output=o.png"):
        config.from_flagfile(Outer, str(recipe))
    got = config.from_flagfile(Outer, str(recipe), ignore=("output",), verbose=True)
    assert got == Outer(name="r", inner=Inner(rate=0.25, mode="slow"), verbose=True, style_images=("x.jpg", "y.jpg"))
    assert "name" not in flags.FLAGS  # a private FlagValues, not the process's
    with pytest.raises(NSTError, match="missing.flags: no such file"):
        config.from_flagfile(Outer, str(tmp_path / "missing.flags"))
    recipe.write_text("--name=r\n--mode=medium\n")
    with pytest.raises(NSTError, match="recipe.flags: .*mode"):
        config.from_flagfile(Outer, str(recipe))


def test_log_dir_takes_over_absls_flag():
    code = (
        "import dataclasses, typing\n"
        "from absl import flags, logging\n"
        "from nst_tf import config\n"
        "@dataclasses.dataclass\n"
        "class C:\n"
        "    log_dir: typing.Optional[str] = config.option(None, 'TensorBoard logs.')\n"
        "config.define_flags(C)\n"
        "print(flags.FLAGS['log_dir'].help)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "TensorBoard logs."


def test_import_leaves_tensorflow_and_absl_logging_alone():
    code = "import sys, nst_tf.config\nprint(sorted(m for m in ('tensorflow', 'absl.logging') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
