"""Devices and threads: how many cores are free, read from /proc/stat by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnistseg.device import cpu_times, idle_cores, set_threads

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
