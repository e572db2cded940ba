"""Compute precision of the Keras models nst_tf builds.

``float32`` everywhere by default. ``bfloat16`` and ``float16`` are Keras mixed
precision: the layers compute in the 16-bit type and keep float32 variables, so
checkpoints and weights files are the same in every precision. bfloat16 is the
CPU choice: with AVX512-BF16 or AMX (AMD Zen 4 and later, Intel Cooper Lake,
Sapphire Rapids and later) oneDNN runs its convolutions at about twice the
float32 rate (measured on this project's CI machine: 3x3 convolution 350 ->
760 GFLOP/s). Without those instructions oneDNN emulates it and it is slower
than float32. float16 is the GPU choice (and needs loss scaling to train).
"""

import contextlib

import keras

from nst_tf.errors import NSTError

PRECISIONS = ("float32", "bfloat16", "float16")

# The /proc/cpuinfo flags of the bfloat16 units oneDNN computes with.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def check(precision):
    """Raise the one-line error for a name that is not in :data:`PRECISIONS`."""
    if precision not in _POLICIES:
        raise NSTError(f"--precision: must be one of {', '.join(PRECISIONS)}, not {precision!r}")


@contextlib.contextmanager
def policy_scope(precision):
    """Build Keras layers that compute in ``precision``, restoring the global policy after.

    Keras reads the dtype policy when a layer is created, so only the models built
    inside this block use it.
    """
    check(precision)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(_POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def current():
    """The precision (a :data:`PRECISIONS` name) of the global Keras policy: that of the
    enclosing :func:`policy_scope`, for a model that builds parts of itself in it."""
    by_policy = {policy: name for name, policy in _POLICIES.items()}
    return by_policy.get(keras.mixed_precision.global_policy().name, "float32")


def _has_gpu():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return bool(tf.config.list_logical_devices("GPU"))


def mixed_precision():
    """The 16-bit precision for mixed-precision training on the visible devices: float16
    on GPUs, bfloat16 on CPUs."""
    return "float16" if _has_gpu() else "bfloat16"


def cpu_lacks_bfloat16(cpuinfo="/proc/cpuinfo"):
    """True when the CPU's flags (Linux's ``cpuinfo``) list none of :data:`BFLOAT16_CPU_FLAGS`,
    so oneDNN would emulate bfloat16; False when they list one, or cannot be read (no claim)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = {word for line in f if line.startswith("flags") for word in line.split()}
    except OSError:
        return False
    return bool(flags) and not flags.intersection(BFLOAT16_CPU_FLAGS)


def emulation_warning(precision, cpuinfo="/proc/cpuinfo"):
    """The one-line warning for computing in ``precision`` on a CPU that emulates it, else None.

    An emulated bfloat16 run is slower than float32 (the CPU fast-net recipe's first 50
    steps took 2.2x as long on an AVX2-only machine), which a user who asked for speed
    should hear before the run, not after.
    """
    if precision != "bfloat16" or _has_gpu() or not cpu_lacks_bfloat16(cpuinfo):
        return None
    return (
        "warning: this CPU has no bfloat16 units (AVX512-BF16 or AMX), so bfloat16 is emulated and slower than float32"
    )
