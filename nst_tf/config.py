"""Configs as code: absl flags generated from dataclass fields, and flagfiles read into configs.

Every setting of a command is a field of a config dataclass (``GatysConfig``,
``CycleGANConfig``, ...), and the field's ``metadata`` carries what its flag
needs::

    image_size: int = option(512, "Longest side of the output.", min=32)
    pooling: str = option("max", "VGG pooling.", choices=POOLINGS)

which is ``dataclasses.field(default=512, metadata={"help": ..., "min": 32})``.
The metadata keys:

* ``help``: the flag's help text.
* ``choices``: the allowed values, a tuple of strings: an enum flag. The
  config's ``__post_init__`` validates against the same tuple.
* ``min``, ``max``: bounds of a number, checked when the flags are parsed.
* ``flag``: the flag's name when it is not the field's.
* ``multi``: a repeatable flag (``--style=a.jpg --style=b.jpg``), one value per
  occurrence, instead of one comma-separated list.
* ``set_by_parent`` (on a nested config field): names of the nested config's
  fields that get no flag because the parent sets them from its own fields
  (a feed-forward run's photos follow the run's ``--seed``).

A float needs no metadata to be checked: every float field, and every element
of a list of floats, must be finite (:func:`check_fields`, which the configs'
``__post_init__`` call along with the ``choices`` check).

:func:`define_flags` defines one flag per leaf field of a config, nested
dataclasses flattened to their leaf names; :func:`from_flags` builds the config
back from the parsed flags; :func:`from_flagfile` reads a ``--flagfile`` recipe
(``configs/*.flags``) into a config in one call, for Python users.

The flag type follows the field's annotation: ``bool``, ``int``, ``float``,
``str`` (an enum with ``choices``), ``Optional[...]`` of those, and sequences
(``Sequence[float]``, ``Optional[Sequence[Union[str, int]]]``...) as
comma-separated lists converted to tuples of the element type. An
``Optional`` string or list reads ``none`` (or nothing) as None, so
``--weights=none`` means random weights.

Importing this module imports only absl's flags (not TensorFlow, not absl's
logging), so library modules can declare their fields with :func:`option`.
"""

import collections.abc
import dataclasses
import math
import os
import typing

from absl import flags

from nst_tf.errors import NSTError

# absl.logging owns a --log_dir for log files that nst_tf's commands never
# write; a config field of that name (TensorBoard logs) takes the name over.
_TAKEN_FROM_ABSL = ("log_dir",)
_REQUIRED = dataclasses.MISSING
_NUMBER_TYPES = {int: "integers", float: "numbers"}

# Flags defined through define_flags belong to the module that called it, as
# if that module had called DEFINE_* itself: they are its key flags (listed by
# --help) and --helpfull lists them under its name.
flags.disclaim_key_flags()


def option(
    default=dataclasses.MISSING,
    help=None,
    *,
    default_factory=dataclasses.MISSING,  # noqa: A002
    choices=None,
    min=None,
    max=None,
    flag=None,
    multi=False,
):  # noqa: A002
    """A dataclass field with the metadata its flag needs (see the module docstring)."""
    metadata = {"help": help}
    for key, value in (("choices", choices), ("min", min), ("max", max), ("flag", flag)):
        if value is not None:
            metadata[key] = tuple(value) if key == "choices" else value
    if multi:
        metadata["multi"] = True
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def check_choices(config):
    """Raise NSTError ``--flag: must be one of ...`` for the first field of ``config`` (a
    dataclass instance, not its nested configs) whose value is not among its ``choices``.

    The configs call it from ``__post_init__``, so the tuple that makes the enum flag
    is the one the Python API is checked against.
    """
    for field in dataclasses.fields(config):
        allowed = field.metadata.get("choices")
        value = getattr(config, field.name)
        if allowed is not None and value not in allowed:
            flag = field.metadata.get("flag", field.name)
            raise NSTError(f"--{flag}: must be one of {', '.join(allowed)}, got {value!r}")


def check_fields(config):
    """Raise NSTError ``--flag: reason`` for the first field of ``config`` (a dataclass
    instance, not its nested configs) whose value its declaration rules out: a value not
    among its ``choices`` (:func:`check_choices`), or a float (or an element of a float
    list) that is NaN or infinite.

    Every float of every config is a weight, rate, ratio or scale, for which NaN or
    infinity silently ruins a run (a grey image, an unchanged one, a NaN loss), so
    finiteness needs no declaration. The configs call it from ``__post_init__``.
    """
    check_choices(config)
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None or _is_config(hints[field.name]):
            continue
        try:
            kind, element, _ = _flag_type(hints[field.name], field.name)
        except TypeError:
            continue
        flag = field.metadata.get("flag", field.name)
        if kind is float and not math.isfinite(value):
            raise NSTError(f"--{flag}: must be a finite number, got {value}")
        if kind is tuple and element is float and not all(math.isfinite(v) for v in value):
            raise NSTError(f"--{flag}: must be finite numbers, got {','.join(str(v) for v in value)}")


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One flag of a config: a field that is not itself a dataclass."""

    path: str  # dotted from the root config: "gatys_config.style_weight"
    name: str  # the flag's name
    field: dataclasses.Field
    kind: type  # bool, int, float, str, or tuple (a list flag)
    element: type  # the element type of a list flag: int, float or str
    optional: bool
    default: object  # _REQUIRED when the field has no default

    @property
    def help(self):
        return self.field.metadata.get("help")

    def parse(self, raw):
        """The field value of a parsed flag value ``raw``."""
        if self.kind is tuple:
            if not raw:
                return None if self.optional else ()
            if self.element is str:
                return tuple(raw)
            try:
                return tuple(self.element(v) for v in raw)
            except ValueError:
                raise NSTError(
                    f"--{self.name}: expected comma-separated {_NUMBER_TYPES[self.element]}, got {','.join(raw)!r}"
                ) from None
        if self.optional and self.kind is str and raw is not None and raw.lower() in ("", "none"):
            return None
        return raw


def _is_config(kind):
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _strip_optional(kind):
    """``(kind without Optional, whether it was Optional)``."""
    if typing.get_origin(kind) is typing.Union and type(None) in typing.get_args(kind):
        rest = tuple(a for a in typing.get_args(kind) if a is not type(None))
        return (rest[0] if len(rest) == 1 else typing.Union[rest]), True
    return kind, False


def _flag_type(kind, where):
    """``(kind, element, optional)`` of a leaf annotation; TypeError if no flag can hold it."""
    kind, optional = _strip_optional(kind)
    origin = typing.get_origin(kind)
    if origin in (collections.abc.Sequence, list, tuple):
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        element = args[0] if len(args) == 1 else str
        # Union[str, int] (a layer name or index) stays a string, resolved later.
        return tuple, (element if element in (int, float) else str), optional
    if kind in (bool, int, float, str):
        return kind, None, optional
    if typing.get_origin(kind) is typing.Union:
        return str, None, optional
    raise TypeError(f"{where}: no flag type for {kind!r}; exclude the field")


def _field_default(default, field):
    """The default of ``field`` in ``default`` (a config class or instance)."""
    if not isinstance(default, type):
        return getattr(default, field.name)
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return _REQUIRED


def _matches(entry, leaf):
    return entry in (leaf.path, leaf.name) or leaf.path.startswith(entry + ".")


def leaves(default, exclude=(), only=None):
    """The :class:`Leaf` objects of a config class or instance, depth first.

    ``exclude`` and ``only`` take flag names or dotted field paths (a path of
    a nested config covers its whole subtree); an entry that matches no leaf,
    or two leaves with one flag name, raise ValueError.
    """
    found = list(_walk(default, ""))
    for group, label in ((exclude, "exclude"), (only or (), "only")):
        for entry in group:
            if not any(_matches(entry, leaf) for leaf in found):
                raise ValueError(f"{label}: {entry!r} is no field of {_name(default)}")
    selected = [
        leaf
        for leaf in found
        if (only is None or any(_matches(e, leaf) for e in only)) and not any(_matches(e, leaf) for e in exclude)
    ]
    paths = {}
    for leaf in selected:
        if leaf.name in paths:
            raise ValueError(
                f"{_name(default)}: fields {paths[leaf.name]} and {leaf.path} both "
                f"make the flag --{leaf.name}; exclude one of them"
            )
        paths[leaf.name] = leaf.path
    return selected


def _name(default):
    return (default if isinstance(default, type) else type(default)).__name__


def _walk(default, prefix, skip=()):
    cls = default if isinstance(default, type) else type(default)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.init or field.name in skip:
            continue
        path = prefix + field.name
        value = _field_default(default, field)
        kind = hints[field.name]
        if _is_config(kind):
            yield from _walk(kind if value is _REQUIRED else value, path + ".", field.metadata.get("set_by_parent", ()))
            continue
        kind, element, optional = _flag_type(kind, f"{cls.__name__}.{field.name}")
        yield Leaf(
            path=path,
            name=field.metadata.get("flag", field.name),
            field=field,
            kind=kind,
            element=element,
            optional=optional,
            default=value,
        )


def define_flags(default, flag_values=flags.FLAGS, exclude=(), help_overrides=None, only=None):
    """Define one absl flag per leaf field of ``default`` (a config class or instance).

    The flags' defaults are ``default``'s values: an instance sets them (a
    nested config built by its parent's ``default_factory`` keeps the values
    the parent gave it), a class takes its fields' defaults (None for fields
    without one). ``exclude``/``only`` select leaves (see :func:`leaves`);
    ``help_overrides`` maps flag names to the help text this command shows.
    Returns the defined leaves.
    """
    selected = leaves(default, exclude, only)
    help_overrides = dict(help_overrides or {})
    unknown = set(help_overrides) - {leaf.name for leaf in selected}
    if unknown:
        raise ValueError(f"help_overrides: no flags {', '.join(sorted(unknown))}")
    for leaf in selected:
        _define(leaf, flag_values, help_overrides.get(leaf.name, leaf.help))
    return selected


def _define(leaf, flag_values, help_text):
    if leaf.name in _TAKEN_FROM_ABSL:
        if flag_values is flags.FLAGS:
            import absl.logging  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        if leaf.name in flag_values and (flag_values.find_module_defining_flag(leaf.name) or "").startswith("absl"):
            delattr(flag_values, leaf.name)
    meta = leaf.field.metadata
    default = None if leaf.default is _REQUIRED else leaf.default
    common = {"flag_values": flag_values}
    if meta.get("multi"):
        if leaf.kind is not tuple or leaf.element is not str:
            raise TypeError(f"{leaf.path}: multi needs a sequence of strings")
        flags.DEFINE_multi_string(leaf.name, list(default or ()), help_text, **common)
    elif leaf.kind is tuple:
        flags.DEFINE_list(leaf.name, None if default is None else [str(v) for v in default], help_text, **common)
    elif "choices" in meta:
        flags.DEFINE_enum(leaf.name, default, meta["choices"], help_text, **common)
    elif leaf.kind is bool:
        flags.DEFINE_boolean(leaf.name, default, help_text, **common)
    elif leaf.kind in (int, float):
        define = flags.DEFINE_integer if leaf.kind is int else flags.DEFINE_float
        define(leaf.name, default, help_text, lower_bound=meta.get("min"), upper_bound=meta.get("max"), **common)
    else:
        flags.DEFINE_string(leaf.name, default, help_text, **common)


def from_flags(default, flag_values=flags.FLAGS, exclude=(), only=None, **overrides):
    """The config ``default`` (a class or instance) with the values of its parsed flags.

    ``exclude``/``only`` must be those given to :func:`define_flags`: the
    leaves they leave out keep ``default``'s values. ``overrides`` set fields
    directly (values a command computes or takes from flags of other names),
    by top-level field name or by flag name (see :func:`replace`). A field
    without a default and without a value raises NSTError naming its flag;
    the config's ``__post_init__`` validates the rest.
    """
    selected = {leaf.path: leaf for leaf in leaves(default, exclude, only)}
    return _build(default, "", selected, flag_values, _paths(default, overrides))


def replace(config, **changes):
    """``config`` with some fields changed, like ``dataclasses.replace``, through nested configs.

    A key is a top-level field name or a flag name (a leaf's field name, or
    its ``flag``), so a command can set ``feature_extractor`` wherever the
    config nests it. The changed configs are validated again.
    """
    return _build(config, "", {}, None, _paths(config, changes))


def _paths(default, values):
    """``{dotted field path: value}`` of ``values`` keyed by top-level field or flag name."""
    top = {field.name for field in dataclasses.fields(default)}
    by_name = {}
    for leaf in _walk(default, ""):
        by_name.setdefault(leaf.name, []).append(leaf.path)
    paths = {}
    for key, value in values.items():
        if key in top:
            paths[key] = value
        elif len(by_name.get(key, ())) == 1:
            paths[by_name[key][0]] = value
        else:
            found = " and ".join(by_name.get(key, ())) or "no field"
            raise TypeError(f"{_name(default)}: {key!r} names {found}")
    return paths


def _build(default, prefix, selected, flag_values, overrides):
    cls = default if isinstance(default, type) else type(default)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        path = prefix + field.name
        if path in overrides:
            kwargs[field.name] = overrides[path]
            continue
        value = _field_default(default, field)
        if _is_config(hints[field.name]):
            nested = hints[field.name] if value is _REQUIRED else value
            if any(p.startswith(path + ".") for p in list(selected) + list(overrides)):
                value = _build(nested, path + ".", selected, flag_values, overrides)
            elif value is _REQUIRED:
                value = nested()
            kwargs[field.name] = value
            continue
        leaf = selected.get(path)
        if leaf is not None:
            value = leaf.parse(flag_values[leaf.name].value)
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if value is _REQUIRED or (required and value is None):
            raise NSTError(f"--{leaf.name if leaf else field.name}: required")
        kwargs[field.name] = value
    return cls(**kwargs)


def from_flagfile(default, path, ignore=(), **overrides):
    """Read the flagfile ``path`` (``configs/*.flags``) into the config ``default``.

    ``default`` is a config class or instance (whose values the file's flags
    change). The file may hold only flags of the config's fields, or flags
    named in ``ignore`` (a command's own flags, such as ``--output``); anything
    else raises NSTError, so that a misspelt flag is not silently lost.
    ``overrides`` set top-level fields, as in :func:`from_flags`. The
    process's global ``FLAGS`` are left alone.
    """
    if not os.path.isfile(path):
        raise NSTError(f"{path}: no such file")
    values = flags.FlagValues()
    define_flags(default, values)
    try:
        rest = values(["from_flagfile", f"--flagfile={path}"], known_only=True)
    except flags.Error as exc:
        raise NSTError(f"{path}: {exc}") from None
    unknown = [arg for arg in rest[1:] if arg.lstrip("-").split("=", 1)[0] not in ignore]
    if unknown:
        raise NSTError(f"{path}: not flags of {_name(default)}: {' '.join(unknown)}")
    return from_flags(default, values, **overrides)
