"""nst-export: write a model as a new SavedModel version for TF Serving (or a TFLite file).

    nst-export --model_type=fast --checkpoint=runs/starry --export_dir=export/models/starry
    nst-export --model_type=multistyle --checkpoint=runs/four --export_dir=export/models/four --max_side=1024
    nst-export --model_type=cyclegan --checkpoint=runs/monet --direction=b2a --export_dir=export/models/monet
    nst-export --model_type=fast --checkpoint=runs/starry --precision=bfloat16 --export_dir=export/models/starry_bf16
    nst-export --model_type=fast --checkpoint=runs/starry --format=tflite --tflite_size=384 \
        --export_dir=tflite/starry
    nst-export --model_type=gatys --weights=vgg19.h5 --num_steps=100 --export_dir=export/models/gatys
    nst-export --model_type=features --weights=vgg19.h5 --export_dir=export/models/vgg19_features

The version folder (``<export_dir>/<n+1>/``) appears only when complete. The
Gatys knobs (``--feature_extractor``, ``--weights``, layers, loss weights,
``--num_steps``, ``--learning_rate``) mean what they mean for ``nst-stylize``.
See :mod:`nst_tf.export` for the signatures.
"""

from nst_tf import cli  # First: quiets TensorFlow start-up.

from absl import flags

from nst_tf import export
from nst_tf import features
from nst_tf import gatys
from nst_tf import losses
from nst_tf.precision import PRECISIONS

_G = {**losses.LossConfig.__dataclass_fields__, **gatys.GatysConfig.__dataclass_fields__}
_E = export.ExportConfig.__dataclass_fields__

flags.DEFINE_enum("model_type", None, export.MODEL_TYPES, "What to export.")
flags.DEFINE_string("checkpoint", None,
                    "Training output directory (fast, multistyle, cyclegan): "
                    "model_config.json + checkpoints/.")
flags.DEFINE_enum("direction", _E["direction"].default, export.DIRECTIONS,
                  "CycleGAN generator to export: a2b (generator_a2b) or b2a.")
flags.DEFINE_string("export_dir", None, "Model folder; the new version is written to <export_dir>/<n+1>/.")
flags.DEFINE_integer("max_side", _E["max_side"].default,
                     "Shrink inputs with a longer side than this inside the graph (0: no cap).",
                     lower_bound=0)
flags.DEFINE_enum("format", _E["format"].default, export.FORMATS,
                  "saved_model (TF Serving) or tflite (fast and multistyle nets only).")
flags.DEFINE_integer("tflite_size", _E["tflite_size"].default,
                     "Fixed height and width of the TFLite model's input.", lower_bound=8)
flags.DEFINE_enum("precision", _E["precision"].default, list(PRECISIONS),
                  "Compute type of the exported network. bfloat16 is about 2x faster on CPUs with "
                  "AVX512-BF16 or AMX and slower elsewhere; the signatures stay float32.")

# Gatys / feature-extractor knobs, as in nst-stylize.
flags.DEFINE_enum("feature_extractor", _G["feature_extractor"].default, ["vgg19", "vgg16", "resnet50"],
                  "Feature network of the features and gatys models.")
flags.DEFINE_string("weights", _G["weights"].default,
                    "Feature network weights: imagenet (Keras cache), a .h5 file, or 'none' (random).")
flags.DEFINE_enum("pooling", _G["pooling"].default, list(features.POOLINGS), "VGG pooling (Gatys et al.: avg).")
flags.DEFINE_list("content_layers", None, "Content layers, names or conv indices (default: the paper's).")
flags.DEFINE_list("style_layers", None, "Style layers, names or conv indices (default: the paper's).")
flags.DEFINE_list("style_layer_weights", None, "Weight w_l of each style layer (default 1/L).")
flags.DEFINE_float("content_weight", _G["content_weight"].default, "alpha.")
flags.DEFINE_float("style_weight", _G["style_weight"].default, "beta.")
flags.DEFINE_float("tv_weight", _G["tv_weight"].default, "Total-variation weight.")
flags.DEFINE_integer("num_steps", 100, "Adam steps the gatys model runs per request.", lower_bound=1)
flags.DEFINE_float("learning_rate", _G["learning_rate"].default, "Adam learning rate (pixels in [0, 1]).")

flags.mark_flags_as_required(["model_type", "export_dir"])
flags.register_validator("checkpoint", lambda v: v is None or bool(v.strip()), "--checkpoint: empty path")
FLAGS = flags.FLAGS


def config_from_flags():
    loss = cli.dataclass_from_flags(
        losses.LossConfig,
        FLAGS,
        weights=cli.weights_flag(FLAGS.weights),
        content_layers=FLAGS.content_layers or None,
        style_layers=FLAGS.style_layers or None,
        style_layer_weights=cli.numbers_flag("style_layer_weights", FLAGS.style_layer_weights),
    )
    gatys_config = cli.dataclass_from_flags(gatys.GatysConfig, FLAGS, optimizer="adam", loss=loss)
    return cli.dataclass_from_flags(export.ExportConfig, FLAGS, gatys_config=gatys_config)


def main(argv):
    del argv
    path = export.export(config_from_flags())
    cli.result(f"exported {FLAGS.model_type} model to {path}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
