"""The history pool of generated images shown to a GAN's discriminator.

Shrivastava et al. 2017 ("Learning from Simulated and Unsupervised Images
through Adversarial Training", sec. 2.3) update the discriminator on a mix of
the generator's current and past outputs, which keeps the adversarial game
from oscillating; CycleGAN (Zhu et al. 2017, sec. 4) keeps 50. TF-GAN offers
the same as ``tfgan.features.tensor_pool`` (its ``random_tensor_pool``); this
one draws from a stateless seed and keeps its images in checkpointable
variables, so a resumed run replays the same draws.
"""

import tensorflow as tf


class ImagePool(tf.Module):
    """History of generated images for the discriminator (Shrivastava et al. 2017).

    Until it holds ``pool_size`` images, every query image is stored and
    returned. After that, each image is, with probability 1/2, swapped for a
    random stored one (which is returned), and otherwise returned itself. All
    in TensorFlow, so it runs inside the training step; the draws come from a
    stateless seed. Each replica keeps its own pool.
    """

    def __init__(self, pool_size, image_shape, name=None):
        super().__init__(name=name)
        self.pool_size = int(pool_size)
        kw = {
            "trainable": False,
            "synchronization": tf.VariableSynchronization.ON_READ,
            "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA,
        }
        self.images = tf.Variable(tf.zeros([max(self.pool_size, 1), *image_shape]), **kw)
        self.count = tf.Variable(0, **kw)

    def query(self, images, seed):
        """``images`` [B, H, W, C] -> the images to show the discriminator."""
        if self.pool_size == 0:
            return images
        n = tf.shape(images)[0]
        coins = tf.random.stateless_uniform([n], seed)
        slots = tf.random.stateless_uniform(
            [n], tf.random.experimental.stateless_fold_in(seed, 1), maxval=self.pool_size, dtype=tf.int32
        )
        chosen = tf.TensorArray(images.dtype, size=n)
        for i in tf.range(n):
            image = images[i]
            if self.count < self.pool_size:
                self._store(self.count, image)
                self.count.assign_add(1)
                picked = image
            elif coins[i] > 0.5:
                # A dense read: a gather from the variable itself would make every later
                # read of the pool copy all of it.
                picked = self.images.read_value()[slots[i]]
                self._store(slots[i], image)
            else:
                picked = image
            chosen = chosen.write(i, picked)
        return chosen.stack()

    def _store(self, slot, image):
        # A whole-variable assign (not scatter_nd_update) works on the
        # per-replica variables of a distribution strategy too.
        self.images.assign(tf.tensor_scatter_nd_update(self.images, [[slot]], image[None]))
