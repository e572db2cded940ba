"""CycleGAN generator and PatchGAN discriminator: shapes, receptive field, init, configs."""

import numpy as np
import pytest
import tensorflow as tf

from nst_tf import models
from nst_tf.models.cyclegan import PatchDiscriminator
from nst_tf.models.cyclegan import ResnetGenerator


@pytest.mark.parametrize("upsampling", ["transpose", "resize", "bilinear"])
@pytest.mark.parametrize("shape", [(2, 64, 64, 3), (1, 37, 45, 3)])
def test_generator_keeps_size_and_range(upsampling, shape):
    net = ResnetGenerator(ngf=8, n_blocks=2, upsampling=upsampling)
    x = tf.random.uniform(shape, -1.0, 1.0, seed=1)
    y = net(x).numpy()
    assert y.shape == shape
    assert np.all(np.abs(y) <= 1.0)


def test_generator_matches_paper_architecture():
    net = ResnetGenerator()  # ngf 64, 9 blocks: 11.378 M parameters, as the authors' model
    assert abs(net.count_params() - 11_378_000) < 10_000
    blocks = [layer for layer in net.chain if type(layer).__name__ == "ResidualBlock"]
    assert len(blocks) == 9 and all(block.filters == 256 for block in blocks)
    assert len(ResnetGenerator(ngf=8, n_blocks=6).chain) == len(net.chain) - 3


def test_discriminator_patch_grid_and_params():
    net = PatchDiscriminator()
    assert abs(net.count_params() - 2_765_000) < 2_000  # the authors' n_layers=3 PatchGAN
    small = PatchDiscriminator(ndf=8)
    assert small(tf.zeros([1, 256, 256, 3])).shape == (1, 30, 30, 1)
    assert small(tf.zeros([2, 64, 64, 3])).shape == (2, 6, 6, 1)


def test_discriminator_receptive_field_is_70():
    # Instance norm mixes the whole image, so count the convolutions' field: r <- (r - 1) s + k.
    convs = [layer for layer in PatchDiscriminator(ndf=4).chain if type(layer).__name__ == "Conv2D"]
    field = 1
    for conv in reversed(convs):
        field = (field - 1) * conv.strides[0] + conv.kernel_size[0]
    assert [c.strides[0] for c in convs] == [2, 2, 2, 1, 1]
    assert field == 70


def test_weights_drawn_from_normal_002():
    net = ResnetGenerator(ngf=16, n_blocks=2)
    kernels = np.concatenate([w.numpy().ravel() for w in net.weights if w.name == "kernel"])
    biases = [w.numpy() for w in net.weights if w.name == "bias"]
    assert abs(kernels.mean()) < 1e-3
    assert kernels.std() == pytest.approx(0.02, rel=0.05)
    assert all(np.all(b == 0) for b in biases)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (ResnetGenerator, {"ngf": 8, "n_blocks": 3, "upsampling": "resize"}),
        (ResnetGenerator, {"ngf": 8, "n_blocks": 3, "upsampling": "bilinear"}),
        (PatchDiscriminator, {"ndf": 8}),
    ],
)
def test_config_round_trip_through_registry(cls, kwargs):
    net = cls(**kwargs)
    config = net.get_config()
    rebuilt = models.MODEL_CLASSES[cls.__name__].from_config(config)
    assert rebuilt.get_config() == config
    assert rebuilt.count_params() == net.count_params()


def test_rejects_unknown_upsampling():
    with pytest.raises(ValueError, match="upsampling"):
        ResnetGenerator(ngf=8, n_blocks=1, upsampling="bicubic")


def test_bilinear_generator_is_the_resize_one_with_bilinear_upsampling():
    nearest = ResnetGenerator(ngf=8, n_blocks=1, upsampling="resize")
    bilinear = ResnetGenerator(ngf=8, n_blocks=1, upsampling="bilinear")
    assert bilinear.count_params() == nearest.count_params()
    upsamplings = [layer for layer in bilinear.chain if type(layer).__name__ == "UpSampling2D"]
    assert [layer.interpolation for layer in upsamplings] == ["bilinear", "bilinear"]
    x = tf.random.uniform([1, 32, 32, 3], -1.0, 1.0, seed=2)
    bilinear.set_weights(nearest.get_weights())
    assert not np.allclose(bilinear(x).numpy(), nearest(x).numpy(), atol=1e-4)
