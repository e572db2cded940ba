"""absl flags every training command shares, and their conversion to a TrainConfig.

Scripts call :func:`define_common_flags` at import time (before ``cli.run``)
and :func:`train_config_from_flags` in ``main``.
"""

import dataclasses

from absl import flags

from nst_tf.training.base import TrainConfig


def define_common_flags(max_steps=TrainConfig.max_steps, checkpoint_every=TrainConfig.checkpoint_every):
    """Define --output_dir, --max_steps, --checkpoint_every, --log_every, --image_every, --seed, --mixed_precision."""
    flags.DEFINE_string("output_dir", None, "Run folder: checkpoints/, logs/ (TensorBoard), flags.txt, "
                        "model_config.json. Rerunning with the same folder resumes.")
    flags.DEFINE_integer("max_steps", max_steps, "Total training steps (including steps of a resumed run).", lower_bound=1)
    flags.DEFINE_integer("checkpoint_every", checkpoint_every, "Save a checkpoint every N steps.", lower_bound=1)
    flags.DEFINE_integer("log_every", TrainConfig.log_every, "Write TensorBoard scalars every N steps.", lower_bound=1)
    flags.DEFINE_integer("image_every", TrainConfig.image_every,
                         "Write sample images to TensorBoard every N steps (0: never).", lower_bound=0)
    flags.DEFINE_integer("seed", TrainConfig.seed, "Seed of the data order, crops and initial weights.")
    flags.DEFINE_bool("mixed_precision", TrainConfig.mixed_precision,
                      "Compute in float16 with loss scaling (for GPUs with tensor cores).")
    flags.mark_flag_as_required("output_dir")


def train_config_from_flags(values):
    """A TrainConfig from parsed flag values (absl FLAGS or any object with those attributes)."""
    names = [f.name for f in dataclasses.fields(TrainConfig) if hasattr(values, f.name)]
    return TrainConfig(**{name: getattr(values, name) for name in names})
