"""Dumoulin et al. 2017 multi-style network: the Johnson trunk with conditional instance norm.

One set of convolution weights is shared by all N styles; each style only owns the
gamma/beta vectors of every normalisation layer (a few thousand numbers). A style-weights
vector selects a style (one-hot) or blends several (a convex mix of their gamma/beta).

New styles are added to a trained net with :meth:`MultiStyleNet.expand`, then only the new
styles' gamma/beta (:meth:`MultiStyleNet.style_variables`) are trained, with the trunk frozen,
as in the "incremental" training of the HKU COMP 3359 report. The old styles' outputs stay bit-identical.
"""

import keras
import tensorflow as tf

from nst_tf.layers import ConditionalInstanceNormalization
from nst_tf.models.transform_net import StyleTrunk


@keras.saving.register_keras_serializable(package="nst_tf")
class MultiStyleNet(StyleTrunk):
    """Called as ``net((images, style_weights))``.

    ``images`` are RGB [0, 1] ``[B, H, W, 3]``; ``style_weights`` is ``[B, N]`` (one row per
    image) or ``[N]`` (the same mix for the whole batch). The output is RGB [0, 1] with the
    input's H, W. ``width`` and ``num_residual_blocks`` are as in :class:`TransformNet`.
    """

    def __init__(self, num_styles, width=1.0, num_residual_blocks=5, **kwargs):
        if int(num_styles) < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        super().__init__(width=width, num_residual_blocks=num_residual_blocks, num_styles=num_styles, **kwargs)

    @property
    def num_styles(self):
        return self._num_styles

    def call(self, inputs):
        images, style_weights = inputs
        style_weights = tf.cast(style_weights, tf.float32)  # Keras autocasts inputs to float16 under mixed precision
        if style_weights.shape.rank == 1:
            style_weights = tf.broadcast_to(style_weights[None, :], [tf.shape(images)[0], self._num_styles])
        return self._trunk(images, style_weights)

    def _norm_layers(self):
        return [layer for layer in self._flatten_layers() if isinstance(layer, ConditionalInstanceNormalization)]

    def style_variables(self, indices):
        """Every conditional-norm gamma/beta variable of the styles in ``indices``.

        Train only these (e.g. ``indices = range(old_n, new_n)`` after :meth:`expand`) to
        add styles without changing the others.
        """
        indices = list(indices)
        for i in indices:
            if not 0 <= i < self._num_styles:
                raise ValueError(f"style index {i} out of range for {self._num_styles} styles")
        return [v for layer in self._norm_layers() for v in layer.style_variables(indices)]

    @property
    def trunk_variables(self):
        """The variables shared by all styles (convolutions), i.e. everything but style_variables."""
        style_ids = {id(v) for v in self.style_variables(range(self._num_styles))}
        return [v for v in self.variables if id(v) not in style_ids]

    def expand(self, num_new_styles):
        """A new net with ``num_new_styles`` more styles, sharing nothing with this one.

        The trunk and the old styles' gamma/beta are copied exactly, so a one-hot weight on an
        old style gives bit-identical outputs. Each new style starts at the mean of the old
        styles' gamma/beta (the equal mix of the styles already learnt), which is a nearer
        start than the identity affine map.
        """
        if int(num_new_styles) < 1:
            raise ValueError(f"num_new_styles must be >= 1, got {num_new_styles}")
        config = self.get_config()
        config["num_styles"] = self._num_styles + int(num_new_styles)
        config.pop("name", None)
        expanded = type(self).from_config(config)
        for new, old in zip(expanded.trunk_variables, self.trunk_variables, strict=True):
            new.assign(old)
        for new_layer, old_layer in zip(expanded._norm_layers(), self._norm_layers(), strict=True):
            for new_list, old_list in ((new_layer.gammas, old_layer.gammas), (new_layer.betas, old_layer.betas)):
                for new, old in zip(new_list, old_list):
                    new.assign(old)
                mean = tf.reduce_mean(tf.stack([v.value for v in old_list]), axis=0)
                for new in new_list[len(old_list) :]:
                    new.assign(mean)
        return expanded

    def get_config(self):
        return {**super().get_config(), "num_styles": self._num_styles}
