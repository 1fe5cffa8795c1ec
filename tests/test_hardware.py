"""Hardware detection: the int8 quantization config follows the CPU's flags."""

from __future__ import annotations

import pytest

from harness.backends.onnx import qint8_config_for
from harness.core.hardware import Hardware


@pytest.mark.parametrize(
    "flags,vendor,expected",
    [
        (("avx2", "avx512f", "avx512_vnni"), "intel", "avx512_vnni"),
        (("avx2", "avx512f"), "intel", "avx512"),
        (("avx", "avx2"), "amd", "avx2"),
        (("asimd",), "arm", "arm64"),
    ],
)
def test_qint8_config_follows_cpu_flags(flags, vendor, expected):
    hw = Hardware("cpu", vendor, flags, 2, 2, 8.0)
    assert qint8_config_for(hw) == expected


def test_qint8_config_without_any_fit_says_what_to_set():
    with pytest.raises(ValueError, match="backend.quantization"):
        qint8_config_for(Hardware("old", "intel", ("avx",), 2, 2, 8.0))
