"""Devices, precision and threads: the auto rule on faked capability checks, free cores from /proc/stat by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnistseg.device import cpu_has_native_bf16, cpu_times, idle_cores, resolve_precision, set_threads

# How an AVX-512 machine is made to run as an AVX2-only CPU (see the README's CPU classes).
AVX2_CLASS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}

# Two readings of /proc/stat: cpu0 spent all 100 ticks between them busy (user), cpu1 spent
# 90 of its 100 idle and 10 in iowait (which counts as idle: nothing runs there).
BEFORE = """cpu  200 0 0 800 0 0 0 0 0 0
cpu0 100 0 0 400 0 0 0 0 0 0
cpu1 100 0 0 400 0 0 0 0 0 0
intr 12345
"""
AFTER = """cpu  300 0 0 890 10 0 0 0 0 0
cpu0 200 0 0 400 0 0 0 0 0 0
cpu1 100 0 0 490 10 0 0 0 0 0
intr 12399
"""


def test_idle_cores_by_hand(tmp_path: Path) -> None:
    (tmp_path / "before").write_text(BEFORE)
    (tmp_path / "after").write_text(AFTER)
    before, after = cpu_times(tmp_path / "before"), cpu_times(tmp_path / "after")
    assert before == {0: (400, 500), 1: (400, 500)}
    assert after == {0: (400, 600), 1: (500, 600)}
    assert idle_cores(before, after, {0, 1}) == pytest.approx(1.0)  # cpu0 0/100 idle, cpu1 100/100
    assert idle_cores(before, after, {0}) == 0.0  # a process allowed only the busy core


def test_set_threads_takes_a_number_and_refuses_zero() -> None:
    kept = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
        with pytest.raises(ValueError, match="at least 1"):
            set_threads(0)
    finally:
        torch.set_num_threads(kept)


@pytest.mark.parametrize(
    ("capability", "onednn_cap", "avx512_bf16", "amx", "expected"),
    [
        ("AVX512", None, True, False, "bf16"),  # AVX512-BF16 (Zen 4, Cooper Lake)
        ("AVX512", None, False, True, "bf16"),  # AMX (Sapphire Rapids)
        ("AVX512", "ALL", True, False, "bf16"),
        ("AVX512", None, False, False, "fp32"),  # AVX-512 without bf16 (Skylake-X, Ice Lake)
        ("AVX2", None, True, False, "fp32"),  # ATEN_CPU_CAPABILITY=avx2 on a bf16 machine
        ("AVX512", "AVX2", True, False, "fp32"),  # oneDNN capped below its bf16 kernels
        ("AVX512", "avx512_core", True, False, "fp32"),
        ("AVX512", "AVX512_CORE_BF16", True, False, "bf16"),
        ("DEFAULT", None, False, False, "fp32"),  # ARM, Apple silicon
    ],
)
def test_auto_precision_on_the_cpu_follows_the_capability_checks(
    monkeypatch: pytest.MonkeyPatch, capability: str, onednn_cap: str | None, avx512_bf16: bool, amx: bool,
    expected: str,
) -> None:  # fmt: skip
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    if onednn_cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn_cap)
    assert cpu_has_native_bf16() is (expected == "bf16")
    assert resolve_precision("auto", torch.device("cpu")) == expected
    # An explicit precision wins over the hardware, either way.
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_auto_precision_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        resolve_precision("fp8", torch.device("cpu"))


def test_the_avx2_emulation_is_seen_by_a_real_process() -> None:
    # The variables that make this machine's PyTorch run as an AVX2-only CPU would, in a fresh
    # interpreter (they are read when PyTorch and oneDNN start): auto must then choose fp32.
    code = (
        "import torch; from mnistseg.device import describe_cpu_class, resolve_precision; "
        "print(describe_cpu_class(), resolve_precision('auto', torch.device('cpu')))"
    )
    env = {**os.environ, **AVX2_CLASS}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "fp32"
    assert "'cpu_capability': 'AVX2'" in result.stdout and "'native_bf16': False" in result.stdout
