"""nst_tf.precision: the CPU's bfloat16 units, read from its flags, and the warning without them."""

import pytest

from nst_tf import precision

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu sse avx avx2\n"
ZEN4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"


@pytest.mark.parametrize(
    "cpuinfo, lacks", [(AVX2_ONLY, True), (ZEN4, False), (SAPPHIRE_RAPIDS, False), ("processor\t: 0\n", False)]
)
def test_cpu_lacks_bfloat16_reads_the_flags(tmp_path, cpuinfo, lacks):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert precision.cpu_lacks_bfloat16(str(path)) is lacks


def test_unreadable_cpuinfo_makes_no_claim(tmp_path):
    assert precision.cpu_lacks_bfloat16(str(tmp_path / "missing")) is False


def test_warning_only_for_emulated_bfloat16(tmp_path):
    avx2, zen4 = tmp_path / "avx2", tmp_path / "zen4"
    avx2.write_text(AVX2_ONLY)
    zen4.write_text(ZEN4)
    assert "bfloat16 is emulated" in precision.emulation_warning("bfloat16", str(avx2))
    assert precision.emulation_warning("bfloat16", str(zen4)) is None
    assert precision.emulation_warning("float32", str(avx2)) is None
