"""nst-export: write a model as a new SavedModel version for TF Serving (or a TFLite file).

    nst-export --model_type=fast --checkpoint=runs/starry --export_dir=export/models/starry
    nst-export --model_type=multistyle --checkpoint=runs/four --export_dir=export/models/four --max_side=1024
    nst-export --model_type=cyclegan --checkpoint=runs/monet --direction=b2a --export_dir=export/models/monet
    nst-export --model_type=arbitrary --checkpoint=runs/adain --max_side=1024 --export_dir=export/models/adain
    nst-export --model_type=arbitrary --checkpoint=runs/adain --format=tflite --tflite_size=384 \\
        --tflite_style_size=256 --export_dir=tflite/adain
    nst-export --model_type=fast --checkpoint=runs/starry --precision=bfloat16 --export_dir=export/models/starry_bf16
    nst-export --model_type=fast --checkpoint=runs/starry --format=tflite --tflite_size=384 \\
        --export_dir=tflite/starry
    nst-export --model_type=gatys --weights=vgg19.h5 --num_steps=100 --export_dir=export/models/gatys
    nst-export --model_type=features --weights=vgg19.h5 --export_dir=export/models/vgg19_features

The version folder (``<export_dir>/<n+1>/``) appears only when complete. The
flags are the fields of :class:`nst_tf.export.ExportConfig`, and the Gatys
knobs of its ``gatys_config`` (``--feature_extractor``, ``--weights``, layers,
loss weights, ``--num_steps``, ``--learning_rate``) mean what they mean for
``nst-stylize``. See :mod:`nst_tf.export` for the signatures.
"""

import dataclasses

from absl import flags

from nst_tf import cli
from nst_tf import config
from nst_tf import export

# The GatysConfig fields the exported features and gatys models use.
GATYS_FLAGS = (
    "feature_extractor",
    "weights",
    "pooling",
    "content_layers",
    "style_layers",
    "style_layer_weights",
    "content_weight",
    "style_weight",
    "tv_weight",
    "optimizer",
    "num_steps",
    "learning_rate",
    "lbfgs_history",
)
ONLY = tuple(f.name for f in dataclasses.fields(export.ExportConfig) if f.name != "gatys_config") + GATYS_FLAGS
EXCLUDE = ("gatys_config.precision",)  # --precision is ExportConfig's

FLAGS = flags.FLAGS
config.define_flags(
    export.ExportConfig,
    only=ONLY,
    exclude=EXCLUDE,
    help_overrides={
        "optimizer": "Optimiser of the gatys model: lbfgs (tfp's, Hager-Zhang line search) or adam.",
        "num_steps": "Optimiser iterations the gatys model runs per request.",
    },
)
flags.register_validator("checkpoint", lambda v: v is None or bool(v.strip()), "--checkpoint: empty path")


def main(argv):
    del argv
    path = export.export(config.from_flags(export.ExportConfig, FLAGS, only=ONLY, exclude=EXCLUDE))
    cli.result(f"exported {FLAGS.model_type} model to {path}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
