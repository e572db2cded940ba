"""A labelled contact sheet of Gatys results over a grid of two settings (``nst-sweep``).

Recreates Gatys et al. 2016, Fig. 3 (style layers down, alpha/beta across)::

    sheet = sweep(content, style, GatysConfig(image_size=256),
                  rows=parse_axis("style_layers:0|0,2|0,2,4|0,2,4,8|0,2,4,8,12"),
                  cols=parse_axis("alpha_beta:1e-5|1e-4|1e-3|1e-2"))

An axis (``--rows`` and ``--cols`` of ``nst-sweep``) is written
``FIELD:VALUE|VALUE|...``: a :class:`~nst_tf.gatys.GatysConfig` field (the same
name as its ``nst-stylize`` flag) and the values of that axis, separated by
``|`` so that list values keep their commas (quote the flag in a shell).
Values are parsed as the field's type: numbers, booleans, ``none``, comma
lists for layers and weights. Loss fields (``style_weight``, ``style_layers``,
...) address the config's :class:`~nst_tf.losses.LossConfig`. The pseudo-field
``alpha_beta`` sets ``style_weight = content_weight / value``, the paper's
content-to-style ratio. Either axis may be omitted. One progress bar covers the
whole grid.

The columns are applied after the rows, so two axes must not set one field: the
columns' value would override the rows', and the rows would render identically
under different labels. :func:`check_axes` refuses that, ``alpha_beta`` against
``style_weight`` included.
"""

import collections.abc
import dataclasses
import typing

from nst_tf import features
from nst_tf import gatys
from nst_tf import images
from nst_tf import losses
from nst_tf import progress as progress_lib
from nst_tf.errors import NSTError

RATIO_FIELD = "alpha_beta"
# Settings that belong to one run, not to a cell of a grid.
NOT_SWEEPABLE = ("log_dir", "log_every", "image_every", "checkpoint_every", "checkpoint_dir", "resume", "loss")
# The fields of the nested LossConfig, swept by their own names.
LOSS_FIELDS = {f.name: f for f in dataclasses.fields(losses.LossConfig)}
# Pseudo-fields -> the config field each one sets.
SETS = {RATIO_FIELD: "style_weight"}


@dataclasses.dataclass(frozen=True)
class Axis:
    """One axis of the grid: a config field, its values and their labels."""

    field: str
    values: tuple
    labels: tuple

    @classmethod
    def single(cls):
        """The axis of a grid with only one row (or column): no field, no label."""
        return cls(field="", values=(None,), labels=("",))

    def apply(self, config, index):
        """``config`` with this axis's ``index``-th value set (and validated)."""
        if not self.field:
            return config
        value = self.values[index]
        if self.field == RATIO_FIELD:
            loss = dataclasses.replace(config.loss, style_weight=config.loss.content_weight / value)
        elif self.field in LOSS_FIELDS:
            loss = dataclasses.replace(config.loss, **{self.field: value})
        else:
            return dataclasses.replace(config, **{self.field: value})
        return dataclasses.replace(config, loss=loss)


def parse_axis(text, flag="--rows"):
    """Parse ``FIELD:VALUE|VALUE|...`` into an :class:`Axis`.

    >>> parse_axis("style_weight:1e2|1e3").values
    (100.0, 1000.0)
    >>> parse_axis("style_layers:0|0,1").values
    (('0',), ('0', '1'))
    """
    if not text:
        return Axis.single()
    field, sep, rest = text.partition(":")
    field = field.strip()
    if not sep or not rest.strip():
        raise NSTError(f"{flag}: expected FIELD:VALUE|VALUE|..., got {text!r}")
    known = {**{f.name: f for f in dataclasses.fields(gatys.GatysConfig)}, **LOSS_FIELDS}
    if field != RATIO_FIELD and (field not in known or field in NOT_SWEEPABLE):
        sweepable = sorted(set(known) - set(NOT_SWEEPABLE)) + [RATIO_FIELD]
        raise NSTError(f"{flag}: cannot sweep {field!r} (choose from {', '.join(sweepable)})")
    labels = tuple(v.strip() for v in rest.split("|"))
    kind = float if field == RATIO_FIELD else known[field].type
    values = tuple(_parse_value(kind, v, f"{flag}: {field}") for v in labels)
    if field == RATIO_FIELD and any(not v > 0 for v in values):
        raise NSTError(f"{flag}: {RATIO_FIELD} values must be > 0")
    return Axis(field=field, values=values, labels=tuple(f"{field}={v}" for v in labels))


def check_axes(rows, cols):
    """Raise NSTError if ``rows`` and ``cols`` set the same config field.

    The columns are applied last, so their value would win in every cell and the
    rows would differ only in their labels: the same field on both axes, or
    ``alpha_beta`` (which sets ``style_weight``) against ``style_weight``.
    """
    if not rows.field or not cols.field:
        return
    if rows.field == cols.field:
        raise NSTError(f"--cols: {cols.field} is swept by --rows already; sweep another field across")
    row_sets, col_sets = SETS.get(rows.field, rows.field), SETS.get(cols.field, cols.field)
    if row_sets == col_sets:
        if cols.field in SETS:
            reason = f"{cols.field} sets {col_sets}, which --rows sweeps"
        else:
            reason = f"{cols.field} is set by {rows.field}, which --rows sweeps"
        raise NSTError(f"--cols: {reason}; the rows would render identically")


def _parse_value(kind, text, what):
    """Parse ``text`` as the type annotation ``kind`` of a GatysConfig or LossConfig field."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:
        if type(None) not in args:
            return text  # Union[str, int]: a layer name or index, resolved later.
        if text.lower() == "none":
            return None
        rest = tuple(a for a in args if a is not type(None))
        return _parse_value(rest[0] if len(rest) == 1 else typing.Union[rest], text, what)
    if origin in (collections.abc.Sequence, list, tuple):
        return tuple(_parse_value(args[0], item.strip(), what) for item in text.split(","))
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise NSTError(f"{what}: expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise NSTError(f"{what}: expected {kind.__name__}, got {text!r}") from None
    return text


def sweep(content, style, base_config, rows, cols, progress=None, cell_size=None):
    """Stylize ``content`` once per grid cell; return the labelled contact sheet.

    Args:
      content, style: as for :func:`nst_tf.gatys.stylize` (paths or arrays;
        ``style`` may be a list).
      base_config: the :class:`~nst_tf.gatys.GatysConfig` every cell starts from.
      rows, cols: :class:`Axis` objects (``Axis.single()`` for none).
      progress: None, True (a progress bar on stderr) or a callable
        ``progress(done, total, losses)`` over the whole grid.
      cell_size: longest side of each cell on the sheet (default: the images').

    Returns:
      The sheet, ``[H, W, 3]`` float32 in [0, 1].
    """
    check_axes(rows, cols)
    configs = [
        [cols.apply(rows.apply(base_config, r), c) for c in range(len(cols.values))] for r in range(len(rows.values))
    ]
    flat = [config for row in configs for config in row]
    extractors = _shared_extractors(flat)
    total = sum(config.total_steps() for config in flat)
    bar = progress_lib.ProgressBar(total, "sweep") if progress is True else None
    report = (lambda done, _, values: bar.update(done, **losses.summary(values))) if bar else progress
    cells = []
    done = 0
    try:
        for config in flat:
            offset = done
            cell_progress = None
            if report is not None:
                cell_progress = lambda d, _, values, o=offset: (  # noqa: E731
                    report(o + d, total, values)
                )
            cells.append(
                gatys.stylize(
                    content, style, config, progress=cell_progress, extractor=extractors[_extractor_key(config)]
                )
            )
            done += config.total_steps()
    finally:
        if bar is not None:
            bar.close()
    shape = cells[0].shape[:2]
    if cell_size:
        shape = images.longest_side_shape(cells[0].shape, cell_size)[:2]
    grid = [
        [images.resize_image(cells[r * len(cols.values) + c], shape) for c in range(len(cols.values))]
        for r in range(len(rows.values))
    ]
    return images.contact_sheet(grid, rows.labels, cols.labels)


def _extractor_key(config):
    return config.loss.feature_extractor, config.loss.weights, config.loss.pooling


def _shared_extractors(configs):
    """One feature network per (extractor, weights, pooling), with every layer the cells use."""
    layers = {}
    for config in configs:
        content, style = config.loss.layers()
        layers.setdefault(_extractor_key(config), []).extend(content + style)
    return {
        key: features.build_feature_extractor(key[0], layers=list(dict.fromkeys(names)), weights=key[1], pooling=key[2])
        for key, names in layers.items()
    }
