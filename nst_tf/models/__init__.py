"""Feed-forward style networks and the registry used to rebuild them from saved configs."""

from nst_tf.models.arbitrary import ArbitraryStyleNet
from nst_tf.models.arbitrary import StyleVector
from nst_tf.models.cyclegan import PatchDiscriminator
from nst_tf.models.cyclegan import ResnetGenerator
from nst_tf.models.multistyle import MultiStyleNet
from nst_tf.models.transform_net import TransformNet
from nst_tf.models.transform_net import crop_to
from nst_tf.models.transform_net import pad_to_multiple

# class_name -> class, for ``MODEL_CLASSES[name].from_config(config)`` in training.base.
MODEL_CLASSES = {
    "ArbitraryStyleNet": ArbitraryStyleNet,
    "TransformNet": TransformNet,
    "MultiStyleNet": MultiStyleNet,
    "ResnetGenerator": ResnetGenerator,
    "PatchDiscriminator": PatchDiscriminator,
}

__all__ = [
    "ArbitraryStyleNet",
    "MODEL_CLASSES",
    "MultiStyleNet",
    "PatchDiscriminator",
    "ResnetGenerator",
    "StyleVector",
    "TransformNet",
    "crop_to",
    "pad_to_multiple",
]
