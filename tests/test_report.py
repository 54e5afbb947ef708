"""benchmarks/report.py: the generated results sections say what the benchmarks' JSON says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]
BENCHMARKS = TOP / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from report import SECTIONS, frontier, markers, measured, measured_on, render, speed_table, summary_table  # noqa: E402


def report(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "report.py"), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_the_committed_pages_match_the_committed_results() -> None:
    result = report("--check")
    assert result.returncode == 0, result.stderr


def test_a_hand_edited_figure_fails_the_check(tmp_path: Path) -> None:
    for page, _, _ in SECTIONS:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(TOP / page, tmp_path / page)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    begin, end = markers("results-summary")
    section = readme.split(begin, 1)[1].split(end, 1)[0]
    row = next(line for line in section.splitlines() if "| `fast` |" in line)
    edited = row.replace("x |", "0x |")  # the speed-up, retyped ten times larger
    assert edited != row
    (tmp_path / "README.md").write_text(readme.replace(row, edited), encoding="utf-8")
    result = report("--check", "--top", tmp_path)
    assert result.returncode == 1 and "differ from the benchmarks' JSON" in result.stderr
    assert report("--top", tmp_path).returncode == 0  # rewriting mends it
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == readme


def summary(mean: float, std: float = 0.0) -> dict[str, float]:
    return {"mean": mean, "std": std}


def test_the_tables_from_a_record_computed_by_hand(tmp_path: Path) -> None:
    ran = {"default": "fp32", "fp32": "fp32", "bf16": "bf16", "default, NCHW": "fp32"}
    seconds = {"default": 10.0, "fp32": 9.0, "bf16": 60.0, "default, NCHW": 12.0}
    fast = {"iou": summary(0.96, 0.001), "wall_seconds": summary(20.0, 0.5), "train_seconds": summary(12.0),
            "errors": {"iou": summary(0.945, 0.002)}}  # fmt: skip
    record = {
        "hardware": {"cpu": "Some CPU", "cpu_capability": "AVX2", "native_bf16": False, "cores": 2},
        "reference": {"dataset": {"total_seconds": 20_000.0}},
        "summaries": {"fast": fast},
        "speed_choices": {"fast": {label: {"precision": ran[label], "train_seconds": seconds[label]} for label in ran}},
        "inference": {"auto": "fp32", "images_per_s": {"fp32": 4000.0, "fp32, NCHW": 3000.0, "bf16": 500.0}},
        "default_precision_slowdown": {"train fast": 10.0 / 9.0 - 1, "evaluate": 0.0},
    }
    (tmp_path / "time_to_quality_avx2.json").write_text(json.dumps(record))
    rows = measured(tmp_path)
    assert [label for label, _, _ in rows] == ["AVX2 only"]
    lines = summary_table(rows)
    # The article's IoU from its counts: 1,247,593 / (1,247,593 + 21,385 + 31,288) = 0.9595.
    assert "| AVX2 only (fp32) | reference: the article's counts, its recipe timed here | — | 0.9595 |" in lines[2]
    # 20,000 s / 20 s = 1,000x less; the network alone and with its vote side by side.
    assert (
        lines[3]
        == "| AVX2 only (fp32) | `fast` | 0.9450 ± 0.0020 | **0.9600 ± 0.0010** | 20.0 ± 0.5 | 12.0 ± 0.0 | 1,000x |"
    )
    # 10 s against the faster 9 s: 11.1% slower; inference at fp32's 4,000 images/s: 0.0%.
    speeds = speed_table(rows)
    assert speeds[2] == "| AVX2 only | train `fast`, s | 10.0 (fp32) | 9.0 | 60.0 | 12.0 | +11.1% |"
    assert speeds[3] == "| AVX2 only | evaluate the test set, images/s | 4,000 (fp32) | 4,000 | 500 | 3,000 | +0.0% |"
    begin, end = markers("x")
    assert render(f"top\n{begin}\nold\n{end}\nbottom\n", "x", ["new"]) == f"top\n{begin}\nnew\n{end}\nbottom\n"
    with pytest.raises(ValueError, match="no <!-- generated:x begin -->"):
        render("a page without the markers\n", "x", ["new"])


def test_the_frontier_and_the_machines_said_from_a_record() -> None:
    fast = {"wall_seconds": summary(20.0)}
    record = {"reference": {"dataset": {"total_seconds": 16_000.0}}, "summaries": {"fast": fast}}
    # 16,000 s / 20 s = 800x, short of 1,000x, which would allow 16,000 / 1,000 = 16.0 s.
    said = frontier(record, "fast", lowest_alone=0.9657)
    assert said[0].startswith(
        "It takes 800x less time than the reference, short of 1,000x (16.0 s): 20.0 s is the time"
    )
    assert "clear" not in frontier(record, "fast", lowest_alone=0.95)[0]  # the network alone missed: no time claimed
    assert frontier(record, "best", lowest_alone=0.99) == []
    fast["wall_seconds"] = summary(16.0)  # 1,000x exactly: nothing to say
    assert frontier(record, "fast", lowest_alone=0.9657) == []
    # The AVX2 class run on another machine with its kernels capped: both CPUs named, the cap said.
    native = {"hardware": {"cpu": "AMD X", "cores": 2, "cpu_capability": "AVX512", "native_bf16": True}}
    capped = {"hardware": {"cpu": "Intel Y", "cores": 2, "cpu_capability": "AVX2", "onednn_max_cpu_isa": "AVX2"}}
    line = measured_on([("native", native, None), ("AVX2 only", capped, None)])[0]
    assert line.startswith("The times below were measured on 2-core virtual machines, as it is (AVX512 kernels, "
                           "native bf16) on an AMD X and run as a CPU without AVX-512")  # fmt: skip
    assert ", an Intel Y with its kernels capped," in line
    same_cpu = {"hardware": {**capped["hardware"], "cpu": "AMD X"}}  # the native machine, capped
    one = measured_on([("native", native, None), ("AVX2 only", same_cpu, None)])[0]
    assert one.startswith("The times below were measured on a 2-core AMD X virtual machine") and "Intel Y" not in one
