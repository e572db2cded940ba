"""Resuming only what belongs to the run, stopping on non-finite losses, and clearing what kill -9
leaves behind (issue 20, items 6, 8 and 9), through the library."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_training_base import ToyTrainer
from test_training_base import config as toy_config

from nst_tf import export
from nst_tf import fileio
from nst_tf import gatys
from nst_tf import models
from nst_tf.errors import NSTError
from nst_tf.losses import LossConfig
from nst_tf.training import base

SIZE = 40
HEX = "0123456789abcdef"


def gatys_config(tmp_path, **overrides):
    loss = {name: overrides.pop(name) for name in ("style_weight", "content_weight") if name in overrides}
    settings = dict(
        image_size=SIZE,
        num_steps=2,
        optimizer="adam",
        checkpoint_every=1,
        checkpoint_dir=str(tmp_path / "checkpoint"),
        loss=LossConfig(weights=None, **loss),
    )
    settings.update(overrides)
    return gatys.GatysConfig(**settings)


@pytest.fixture(scope="module")
def extractor():
    return gatys.build_extractor(gatys.GatysConfig(loss=LossConfig(weights=None)))


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(2)
    return {name: rng.random((SIZE, 32, 3)).astype(np.float32) for name in ("louvre", "golden_gate", "style", "other")}


def stylize(pictures, content, extractor, cfg, style="style"):
    return gatys.stylize(pictures[content], pictures[style], cfg, extractor=extractor)


# ----------------------------------------------------------------- item 6: a checkpoint records its inputs


@pytest.mark.parametrize(
    "change, message",
    [
        ({"content": "louvre"}, "made from another content image"),
        ({"style": "other"}, "made from other style images"),
        ({"style_weight": 1e4}, r"made with other loss settings: --style_weight=1000.0 \(now 10000.0\)"),
        ({"style_scale": 0.5}, r"--style_scale=1.0 \(now 0.5\)"),
    ],
)
def test_resume_refuses_a_checkpoint_of_other_inputs_or_objective(tmp_path, pictures, extractor, change, message):
    stylize(pictures, "golden_gate", extractor, gatys_config(tmp_path))
    path = tmp_path / "checkpoint" / gatys.CHECKPOINT_FILE
    saved = path.read_bytes()
    change = dict(change)
    content = change.pop("content", "golden_gate")
    style = change.pop("style", "style")
    with pytest.raises(NSTError, match=message):
        stylize(pictures, content, extractor, gatys_config(tmp_path, resume=True, **change), style=style)
    assert path.read_bytes() == saved  # refused before anything was written


def test_resume_goes_on_after_changing_the_optimiser_or_the_steps(tmp_path, pictures, extractor):
    stylize(pictures, "golden_gate", extractor, gatys_config(tmp_path))
    done = []
    cfg = gatys_config(tmp_path, resume=True, num_steps=4, optimizer="lbfgs")
    gatys.stylize(
        pictures["golden_gate"], pictures["style"], cfg, extractor=extractor, progress=lambda d, t, v: done.append(d)
    )
    assert done == [3, 4]
    assert gatys.load_checkpoint(cfg.checkpoint_dir, [SIZE])[:2] == (0, 4)


def test_a_checkpoint_without_a_record_is_refused(tmp_path, pictures, extractor):
    directory = str(tmp_path / "checkpoint")
    gatys.save_checkpoint(directory, pictures["golden_gate"][np.newaxis], scale_index=0, step=1, sizes=[SIZE])
    with pytest.raises(NSTError, match="records no inputs"):
        stylize(pictures, "golden_gate", extractor, gatys_config(tmp_path, resume=True))


# ----------------------------------------------------------------- item 8: non-finite losses stop the run


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_gatys_stops_when_the_loss_overflows_and_writes_no_checkpoint(tmp_path, pictures, extractor, optimizer):
    # 1e39 is finite in Python but not in float32, where the loss is computed.
    cfg = gatys_config(tmp_path, style_weight=1e39, optimizer=optimizer)
    with pytest.raises(NSTError, match=r"^the loss became (inf|nan) at step 1 \(total\); lower the loss weights"):
        stylize(pictures, "louvre", extractor, cfg)
    assert not os.path.exists(os.path.join(cfg.checkpoint_dir, gatys.CHECKPOINT_FILE))


class DivergingTrainer(ToyTrainer):
    """A toy trainer whose targets overflow float32 from ``bad_step`` on, or, with
    ``poison_weights``, whose weights turn NaN at ``bad_step`` while the loss stays finite."""

    def __init__(self, config, bad_step, poison_weights=False):
        self.bad_step = bad_step
        self.poison_weights = poison_weights
        super().__init__(config)

    def train_step(self, batch):
        bad = self.step >= self.bad_step - 1  # the step counter before this step
        if not self.poison_weights:
            batch = dict(batch, y=tf.where(bad, batch["y"] * 1e30, batch["y"]))
        metrics = super().train_step(batch)
        if self.poison_weights:
            kernel = self.model.layers[0].kernel
            kernel.assign(tf.where(bad, tf.fill(kernel.shape, np.nan), kernel))
        return metrics


def test_training_stops_at_the_first_non_finite_loss_without_saving_it(tmp_path):
    trainer = DivergingTrainer(toy_config(tmp_path, checkpoint_every=2, max_steps=10), bad_step=5)
    with pytest.raises(NSTError, match=r"^the loss became inf at step 5 \(total\)"):
        trainer.train()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")


def test_training_saves_no_checkpoint_of_non_finite_weights(tmp_path):
    trainer = DivergingTrainer(toy_config(tmp_path, checkpoint_every=2, max_steps=10), bad_step=4, poison_weights=True)
    with pytest.raises(NSTError, match=r"^the weights became non-finite at step 4 \(.*kernel\); lower the loss"):
        trainer.train()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")


# ----------------------------------------------------------------- item 9: leftovers of kill -9


def plant(folder, names):
    """Create files (``name``) and folders (``name/``) holding one file each."""
    os.makedirs(folder, exist_ok=True)
    for name in names:
        path = os.path.join(folder, name.rstrip("/"))
        if name.endswith("/"):
            os.makedirs(path)
            open(os.path.join(path, "part-00000"), "wb").close()
        else:
            open(path, "wb").close()


OURS = [f".tmp-{HEX}-2/", f".tmp-{HEX}-checkpoint.npz", f".tmp-{HEX}-flags.txt"]
NOT_OURS = [".tmp-notours", ".tmp-0123-short-hex", f"tmp-{HEX}-no-dot", "ckpt-3_temp.txt", "notes.txt", "1/"]


def test_remove_leftovers_removes_only_our_temporaries(tmp_path):
    plant(tmp_path, OURS + NOT_OURS + ["ckpt-3_temp/"])
    assert fileio.remove_leftovers(tmp_path) == sorted(name.rstrip("/") for name in OURS)
    assert sorted(os.listdir(tmp_path)) == sorted(name.rstrip("/") for name in NOT_OURS + ["ckpt-3_temp/"])
    assert fileio.remove_leftovers(tmp_path, base.CHECKPOINT_TEMPORARIES) == ["ckpt-3_temp"]
    assert fileio.remove_leftovers(tmp_path / "missing") == []


def test_remove_leftovers_spares_a_folder_being_written(tmp_path):
    with fileio.atomic_directory(tmp_path / "2") as version:
        plant(tmp_path, [f".tmp-{HEX}-1/"])  # a killed export's
        assert fileio.remove_leftovers(tmp_path) == [f".tmp-{HEX}-1"]
        assert os.path.isdir(version)
        open(os.path.join(version, "saved_model.pb"), "wb").close()
    assert os.listdir(tmp_path) == ["2"] and os.listdir(tmp_path / "2") == ["saved_model.pb"]


def test_a_training_run_starts_by_removing_its_leftovers(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    plant(tmp_path, OURS + NOT_OURS)
    plant(checkpoints, ["ckpt-5_temp/", "checkpoint.tmp" + HEX * 2, "ckpt-5_temp.txt", "checkpoint.tmpx"])
    ToyTrainer(toy_config(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(["checkpoints"] + [name.rstrip("/") for name in NOT_OURS])
    assert sorted(os.listdir(checkpoints)) == ["checkpoint.tmpx", "ckpt-5_temp.txt"]


def test_a_gatys_run_starts_by_removing_its_leftovers(tmp_path, pictures, extractor):
    plant(tmp_path / "checkpoint", [f".tmp-{HEX}-checkpoint.npz", "notes.txt"])
    stylize(pictures, "louvre", extractor, gatys_config(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoint")) == [gatys.CHECKPOINT_FILE, "notes.txt"]


def test_an_export_starts_by_removing_its_leftovers(tmp_path):
    plant(tmp_path, [f".tmp-{HEX}-1/", "notes.txt"])
    keras.utils.set_random_seed(0)
    net = models.TransformNet(width=0.125, num_residual_blocks=1)
    path = export.export(export.ExportConfig("fast", str(tmp_path)), model=net)
    assert os.path.basename(path) == "1"
    assert sorted(os.listdir(tmp_path)) == ["1", "notes.txt"]
