"""The training base shared by the feed-forward and CycleGAN trainers.

A :class:`Trainer` subclass says *what* to train (models, optimisers, data, one
per-replica step); the base does the rest the same way for every method:

* ``tf.distribute``: :func:`make_strategy` picks MultiWorkerMirroredStrategy
  from ``TF_CONFIG``, MirroredStrategy over several local devices, or the
  default strategy. Models and optimisers are built inside its scope and the
  step runs as ``strategy.run`` plus a reduction inside one ``tf.function``.
* ``<output_dir>/checkpoints``: a ``tf.train.CheckpointManager`` saving every
  ``checkpoint_every`` steps and at the end, resumed automatically. The
  checkpoint holds the step, the optimiser slots and the input position, so a
  resumed run sees the same batches and ends with the same variables as an
  uninterrupted one.
* ``<output_dir>/logs``: TensorBoard scalars and sample images.
* ``<output_dir>/flags.txt`` and ``model_config.json`` (see
  :func:`load_trained_model`).
* One progress bar, and a clean stop on Ctrl-C that saves a checkpoint first.
* Mixed precision: ``mixed_float16`` with a ``LossScaleOptimizer`` on GPUs,
  ``mixed_bfloat16`` (no loss scaling needed) on CPUs.
"""

import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile

import keras
import tensorflow as tf

from nst_tf import fileio
from nst_tf import losses
from nst_tf import precision
from nst_tf.config import check_fields
from nst_tf.config import option
from nst_tf.errors import NSTError
from nst_tf.errors import first_line
from nst_tf.progress import ProgressBar

MODEL_CONFIG = "model_config.json"
FLAGS_FILE = "flags.txt"
CHECKPOINT_DIR = "checkpoints"
# TensorFlow's temporaries in CHECKPOINT_DIR: a save writes ckpt-<N>_temp/ and merges it
# into ckpt-<N>.index and .data files; the manager rewrites its state file "checkpoint"
# through checkpoint.tmp<32 hex digits> (tf.io.gfile's atomic write).
CHECKPOINT_TEMPORARIES = r"ckpt-\d+_temp|checkpoint\.tmp[0-9a-f]{32}"

# Optional keys of a dict batch (see nst_tf.data): how many source elements were
# dropped (unreadable) just before each element, and how many of those were
# files not dropped before (the first epoch's). When present, the base advances
# a resumable input position by the source elements each step consumed and
# counts the distinct unreadable files, instead of passing the keys to the step.
SKIPPED_KEY = "skipped"
UNREADABLE_KEY = "unreadable"


@dataclasses.dataclass
class TrainConfig:
    """Settings every trainer shares (the generic training flags).

    Each trainer's config subclasses this one (``FeedForwardConfig``,
    ``CycleGANConfig``), so a run is one flat dataclass whose fields are the
    command's flags, and extends :meth:`__post_init__` with its own checks.
    """

    output_dir: str = option(
        help="Run folder: checkpoints/, logs/ (TensorBoard), flags.txt, "
        "model_config.json. Rerunning with the same folder resumes."
    )
    max_steps: int = option(40000, "Total training steps (including steps of a resumed run).", min=1)
    checkpoint_every: int = option(1000, "Save a checkpoint every N steps.", min=1)
    log_every: int = option(100, "Write TensorBoard scalars every N steps.", min=1)
    image_every: int = option(1000, "Write sample images to TensorBoard every N steps (0: never).", min=0)
    seed: int = option(0, "Seed of the data order, crops and initial weights.")
    mixed_precision: bool = option(
        False,
        "Compute in 16 bits: float16 with loss scaling on GPUs, bfloat16 "
        "on CPUs (about 2x faster with AVX512-BF16 or AMX, slower without).",
    )
    keep_checkpoints: int = option(3, "Newest checkpoints kept in <output_dir>/checkpoints.", min=1)

    def __post_init__(self):
        """Raise NSTError naming the first bad setting.

        :func:`~nst_tf.config.check_fields` checks the fields of the trainer's whole config
        (choices, finite floats), so a subclass need not call it again.
        """
        check_fields(self)
        checks = [
            (bool(self.output_dir), "--output_dir", "required (the run folder)"),
            (self.max_steps >= 0, "--max_steps", f"must be >= 0, not {self.max_steps}"),
            (self.checkpoint_every >= 1, "--checkpoint_every", f"must be >= 1, not {self.checkpoint_every}"),
            (self.log_every >= 1, "--log_every", f"must be >= 1, not {self.log_every}"),
            # None: the trainer's own default (CycleGAN: every epoch end).
            (
                self.image_every is None or self.image_every >= 0,
                "--image_every",
                f"must be >= 0 (0: never), not {self.image_every}",
            ),
            (self.keep_checkpoints >= 1, "--keep_checkpoints", f"must be >= 1, not {self.keep_checkpoints}"),
        ]
        check_all(checks)


def check_all(checks):
    """Raise NSTError ``--flag: reason`` for the first ``(ok, flag, reason)`` that is not ok."""
    for ok, flag, reason in checks:
        if not ok:
            raise NSTError(f"{flag}: {reason}")


@dataclasses.dataclass
class TrainResult:
    step: int
    metrics: dict
    skipped_files: int
    interrupted: bool
    # The last held-out evaluation (Trainer.evaluate), empty without one.
    eval_metrics: dict = dataclasses.field(default_factory=dict)


def make_strategy():
    """The distribution strategy for this process.

    ``TF_CONFIG`` in the environment means a multi-worker cluster; several
    visible GPUs (or CPU logical devices, as the tests configure) mean one
    machine with replicas; otherwise the default single-device strategy.
    Create it before other TensorFlow work: collectives need it first.
    """
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this worker writes the logs, checkpoints and run files."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


class _InterruptFlag:
    """Turns the first SIGINT into a request to stop after the current step."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        if self.requested:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """Base of a training run writing into ``config.output_dir``.

    Subclasses set ``method`` and implement:

    * optionally ``prepare()``: read and check the inputs the run needs
      (style images, data counts) and adjust ``self.config``; called first
      thing after the strategy is created, before ``build()``.
    * ``build()``: create the models and optimisers (called inside the
      strategy scope and the dtype policy) and return the dict of objects to
      checkpoint. Set ``self.models`` to the dict of Keras models (checkpoint
      attribute name -> model) that ``model_config.json`` describes.
    * ``make_dataset(input_context)``: the ``tf.data`` pipeline of
      *per-replica* batches for this input pipeline; start at
      ``self.data_position`` to resume where the checkpoint left off.
    * ``train_step(batch)``: one step on one replica, usually through
      :meth:`minimize`; returns a dict of scalar metrics.
    * optionally ``sample_images()`` -> dict name -> [N, H, W, 3] in [0, 1].
    * optionally ``eval_due(step)`` and ``evaluate()`` -> dict tag -> float:
      quality metrics on held-out data, written under ``eval/``.
    """

    method = None
    style_names = ()

    def __init__(self, config, strategy=None):
        # The strategy comes first: MultiWorkerMirroredStrategy's collectives must
        # be set up before any other TensorFlow work, tf.data included.
        self.strategy = strategy or make_strategy()
        self.config = config
        self.chief = is_chief(self.strategy)
        if self.chief:  # before any work: the run's files go there
            fileio.check_writable(config.output_dir, "--output_dir", folder=True)
        self.prepare()
        config = self.config
        self.compute_precision = precision.mixed_precision() if config.mixed_precision else "float32"
        warning = precision.emulation_warning(self.compute_precision)
        if warning and self.chief:
            sys.stderr.write(f"{warning}: --mixed_precision=false trains faster here\n")
        self.models = {}
        with self.strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.data_position = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_position")
            self.skipped_files = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_files")
            with precision.policy_scope(self.compute_precision):
                objects = self.build()
        self.checkpoint = tf.train.Checkpoint(
            step=self.step,
            data_position=self.data_position,
            skipped_files=self.skipped_files,
            **objects,
        )
        self._checkpoint_dir = os.path.join(config.output_dir, CHECKPOINT_DIR)
        if self.chief:
            # What a kill -9 left half-written: run files, checkpoint folders and state.
            fileio.remove_leftovers(config.output_dir)
            fileio.remove_leftovers(self._checkpoint_dir, CHECKPOINT_TEMPORARIES)
        else:
            # Every worker must take part in a save; only the chief's copy is kept.
            self._checkpoint_dir = tempfile.mkdtemp(prefix="nst-worker-ckpt-")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir, max_to_keep=config.keep_checkpoints, step_counter=self.step
        )
        self._restore()
        self._step_fn = None

    # -- hooks --------------------------------------------------------------
    def prepare(self):
        pass

    def build(self):
        raise NotImplementedError

    def make_dataset(self, input_context):
        raise NotImplementedError

    def train_step(self, batch):
        raise NotImplementedError

    def sample_images(self):
        return {}

    def eval_due(self, step):
        """Whether to write :meth:`evaluate`'s metrics after ``step``."""
        return False

    def evaluate(self):
        return {}

    def checkpoint_due(self, step):
        """Whether to save after ``step``; trainers with epochs also save at epoch ends."""
        return step % self.config.checkpoint_every == 0

    # -- helpers for subclasses ---------------------------------------------
    def make_optimizer(self, optimizer):
        """Wrap ``optimizer`` for loss scaling when training in float16."""
        if self.compute_precision == "float16":
            return keras.mixed_precision.LossScaleOptimizer(optimizer)
        return optimizer

    def minimize(self, loss_fn, optimizer, variables):
        """One gradient step on the global-batch mean of ``loss_fn()["total"]``.

        ``loss_fn`` returns a dict of per-replica batch means; "total" is the
        objective and the rest are metrics (named as :data:`nst_tf.losses.TERMS`).
        Dividing by the replica count makes the optimiser's cross-replica
        gradient *sum* a mean over the global batch.
        """
        with tf.GradientTape() as tape:
            values = loss_fn()
            objective = tf.cast(values["total"], tf.float32) / self.strategy.num_replicas_in_sync
            if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
                objective = optimizer.scale_loss(objective)
        grads = tape.gradient(objective, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return values

    def step_seed(self, salt=0):
        """A stateless-RNG seed for this step: random choices replay exactly on resume."""
        seed = tf.cast(self.config.seed, tf.int64) + tf.cast(salt, tf.int64)
        return tf.stack([seed, self.step.read_value()])

    # -- the run --------------------------------------------------------------
    def train(self, flags_text=None, desc=None):
        """Train until ``config.max_steps`` or Ctrl-C; returns a :class:`TrainResult`."""
        config = self.config
        if self.chief:
            self._write_run_files(flags_text)
        writer = self._summary_writer()
        dataset = self.strategy.distribute_datasets_from_function(self.make_dataset)
        iterator = iter(dataset)
        step = int(self.step.numpy())
        saved_step = step
        metrics = {}
        eval_metrics = {}
        bar = ProgressBar(config.max_steps, desc or self.method or "train", enabled=self.chief)
        bar.update(step)
        with bar, _InterruptFlag() as interrupt, writer.as_default():
            while step < config.max_steps and not interrupt.requested:
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                values = self._distributed_step(batch)
                step += 1
                metrics = {name: float(value) for name, value in values.items()}
                # The metrics are read back at every step anyway: checking them costs nothing,
                # and stops a diverged run before a checkpoint of it.
                losses.check_finite(metrics, step)
                bar.update(step, **losses.summary(metrics))
                if step % config.log_every == 0 or step == config.max_steps:
                    self._write_scalars(metrics, step)
                if config.image_every and step % config.image_every == 0:
                    self._write_images(step)
                if self.chief and self.eval_due(step):
                    eval_metrics = self.evaluate()
                    for tag, value in eval_metrics.items():
                        tf.summary.scalar(f"eval/{tag}", value, step=step)
                if self.checkpoint_due(step):
                    self._save(step)
                    saved_step = step
            if step != saved_step:
                self._save(step)
            writer.flush()
        if not self.chief:
            shutil.rmtree(self._checkpoint_dir, ignore_errors=True)
        return TrainResult(step, metrics, int(self.skipped_files.numpy()), interrupt.requested, eval_metrics)

    def _save(self, step):
        """Save a checkpoint of ``step``, unless a weight is NaN or infinite.

        A step whose loss was finite can still produce such weights (an overflowing
        gradient); saved, they would make every resume fail again at once.
        """
        for model in self.models.values():
            for variable in model.variables:
                if tf.as_dtype(variable.dtype).is_floating and not bool(tf.reduce_all(tf.math.is_finite(variable))):
                    raise NSTError(
                        f"the weights became non-finite at step {step} ({getattr(variable, 'path', variable.name)}); "
                        "lower the loss weights or the learning rate"
                    )
        self.manager.save(checkpoint_number=step)

    def _distributed_step(self, batch):
        if self._step_fn is None:
            self._step_fn = tf.function(self._cross_replica_step)
        return self._step_fn(batch)

    def _cross_replica_step(self, batch):
        strategy = self.strategy
        metrics, source = strategy.run(self._replica_step, args=(batch,))
        reduced = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in metrics.items()}
        if source:
            total = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in source.items()}
            self.data_position.assign_add(total["consumed"])
            self.skipped_files.assign_add(total["unreadable"])
        self.step.assign_add(1)
        return reduced

    def _replica_step(self, batch):
        source = {}
        if isinstance(batch, dict) and SKIPPED_KEY in batch:
            batch = dict(batch)
            skipped = batch.pop(SKIPPED_KEY)
            unreadable = batch.pop(UNREADABLE_KEY, skipped)
            source["unreadable"] = tf.reduce_sum(unreadable)
            source["consumed"] = tf.size(skipped, out_type=tf.int64) + tf.reduce_sum(skipped)
        metrics = {k: tf.cast(v, tf.float32) for k, v in self.train_step(batch).items()}
        return metrics, source

    def _restore(self):
        """Resume from the run's latest checkpoint, if any, saying so on stderr.

        Every worker restores the chief's checkpoint (the output dir is shared),
        so all replicas resume from the same step and variables.
        """
        latest = tf.train.latest_checkpoint(os.path.join(self.config.output_dir, CHECKPOINT_DIR))
        if latest is None:
            return
        restore_checkpoint(
            self.checkpoint,
            latest,
            self.config.output_dir,
            "this model (changed model flags?); use a new --output_dir",
            partial=False,
        )
        sys.stderr.write(f"resumed from step {int(self.step.numpy())}\n")

    def _summary_writer(self):
        if not self.chief:
            return tf.summary.create_noop_writer()
        return tf.summary.create_file_writer(os.path.join(self.config.output_dir, "logs"))

    def _write_scalars(self, metrics, step):
        for name, value in metrics.items():
            tf.summary.scalar(f"train/{name}", value, step=step)
        tf.summary.scalar("data/skipped_files", self.skipped_files.numpy(), step=step)

    def _write_images(self, step):
        if not self.chief:
            return
        for name, images in self.sample_images().items():
            tf.summary.image(f"samples/{name}", tf.clip_by_value(images, 0.0, 1.0), step=step, max_outputs=8)

    def _write_run_files(self, flags_text):
        out = self.config.output_dir
        if flags_text is not None:
            fileio.atomic_write_text(os.path.join(out, FLAGS_FILE), flags_text)
        description = {
            "method": self.method,
            "models": {
                name: {"class_name": type(model).__name__, "config": model.get_config()}
                for name, model in self.models.items()
            },
            "style_names": list(self.style_names),
        }
        fileio.atomic_write_text(os.path.join(out, MODEL_CONFIG), json.dumps(description, indent=2) + "\n")


def restore_checkpoint(checkpoint, path, output_dir, model, partial):
    """Restore the checkpoint ``path`` into ``checkpoint`` (a ``tf.train.Checkpoint``), or raise
    a one-line NSTError telling a damaged file from one of another ``model``.

    ``partial``: the checkpoint may hold more than ``checkpoint`` asks for (a model without
    its optimiser); otherwise every object of ``checkpoint`` must be in it.
    """
    try:
        status = checkpoint.restore(path)
        if partial:
            status.expect_partial()
        else:
            status.assert_existing_objects_matched()
    except (IndexError, tf.errors.OpError) as exc:
        # Cut short (IndexError: "Read less bytes than requested"), empty, or missing its data.
        raise NSTError(f"{path}: unreadable checkpoint ({first_line(exc)})") from None
    except (AssertionError, ValueError) as exc:
        raise NSTError(f"{output_dir}: its checkpoint does not match {model} ({first_line(exc)})") from None


def read_model_config(output_dir):
    """The parsed ``model_config.json`` of a training output dir, or NSTError.

    Its ``models`` maps checkpoint names to ``{"class_name": ..., "config": {...}}``.
    """
    path = os.path.join(output_dir, MODEL_CONFIG)
    try:
        with open(path, encoding="utf-8") as f:
            description = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        raise NSTError(f"{output_dir}: not a training output dir (no {MODEL_CONFIG})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NSTError(f"{path}: invalid JSON ({first_line(exc)})") from None
    models = description.get("models") if isinstance(description, dict) else None
    if not isinstance(models, dict) or not all(
        isinstance(entry, dict) and isinstance(entry.get("class_name"), str) and isinstance(entry.get("config"), dict)
        for entry in models.values()
    ):
        raise NSTError(f"{path}: not a model description (a JSON object whose models have class_name and config)")
    return description


def load_trained_model(output_dir, name=None, compute_precision="float32"):
    """Rebuild a trained model from ``model_config.json`` and its latest checkpoint.

    ``name`` is the checkpoint attribute ("model", "generator_a2b", ...); by
    default "model" if the run has one, else the first model listed. The model
    computes in ``compute_precision`` (:mod:`nst_tf.precision`), whatever the
    run trained in: the checkpointed variables are float32 either way.
    """
    from nst_tf import models  # pylint: disable=import-outside-toplevel

    description = read_model_config(output_dir)
    entries = description.get("models", {})
    if name is None:
        name = "model" if "model" in entries else next(iter(entries), None)
    if name not in entries:
        raise NSTError(f"{output_dir}: no model named {name!r} (has {', '.join(entries) or 'none'})")
    entry = entries[name]
    cls = models.MODEL_CLASSES.get(entry["class_name"])
    if cls is None:
        raise NSTError(f"{output_dir}: unknown model class {entry['class_name']!r}")
    config = {k: v for k, v in entry["config"].items() if k != "dtype"}
    try:
        with precision.policy_scope(compute_precision):
            model = cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise NSTError(f"{output_dir}: {MODEL_CONFIG} does not describe a {cls.__name__} ({first_line(exc)})") from None
    latest = tf.train.latest_checkpoint(os.path.join(output_dir, CHECKPOINT_DIR))
    if latest is None:
        raise NSTError(f"{output_dir}: no checkpoint yet")
    restore_checkpoint(tf.train.Checkpoint(**{name: model}), latest, output_dir, MODEL_CONFIG, partial=True)
    return model
