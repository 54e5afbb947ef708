"""Nothing lost: a run killed with SIGKILL resumes to the same weights; refusals are clear."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnistseg.checkpoint import load_weights
from mnistseg.recipes import get_preset


def mnistseg_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mnistseg", *map(str, args)]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mnistseg_command(*args), capture_output=True, text=True, timeout=600, cwd=cwd)


def rows_without_timing(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        del row["seconds"]
    return rows


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(data_root: Path, tmp_path: Path) -> None:
    recipe = ["--subset", "3000", "--epochs", "3", "--base-width", "8", "--augment", "--ema-decay", "0.9"]
    common = ["--root", data_root, "--device", "cpu", "--deterministic", *recipe]
    straight = run("train", "--out", tmp_path / "straight", *common)
    assert straight.returncode == 0, straight.stderr

    killed_out = tmp_path / "killed"
    process = subprocess.Popen(mnistseg_command("train", "--out", killed_out, *common), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed_out / "training_state.safetensors").exists():  # written last, as epoch 1 ends
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    time.sleep(0.7)  # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    resumed = run("train", "--resume", killed_out, "--root", data_root, "--device", "cpu", "--deterministic")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    for name in ("last.safetensors", "model.safetensors"):
        expected, actual = load_weights(tmp_path / "straight" / name), load_weights(killed_out / name)
        assert expected.keys() == actual.keys()
        assert all(expected[key].equal(actual[key]) for key in expected), name
    assert rows_without_timing(killed_out / "metrics.csv") == rows_without_timing(tmp_path / "straight" / "metrics.csv")


@pytest.fixture(scope="module")
def finished(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    result = run("train", "--root", data_root, "--out", out, "--subset", "600", "--epochs", "1", "--base-width", "8")
    assert result.returncode == 0, result.stderr
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--lr", "0.5"], f"lr {get_preset('fast', torch.device('cpu')).lr} -> 0.5"),  # 0.03, or 0.024 in fp32
        (["--preset", "best"], "trained with preset 'fast', not 'best'"),
        (["--dataset", "fashion-mnist"], "dataset 'mnist' -> 'fashion-mnist'"),
    ],
)
def test_resume_refuses_another_recipe_and_changes_nothing(
    finished: Path, data_root: Path, flags: list[str], fragment: str
) -> None:
    before = snapshot(finished)
    result = run("train", "--resume", finished, "--root", data_root, *flags)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr
    assert snapshot(finished) == before


def test_resuming_a_finished_run_trains_nothing(finished: Path, data_root: Path) -> None:
    before = snapshot(finished)
    result = run("train", "--resume", finished, "--root", data_root)
    assert result.returncode == 0, result.stderr
    assert "already finished" in result.stdout
    assert snapshot(finished) == before


def test_resume_from_another_folder_reads_the_runs_own_data_root(
    finished: Path, data_root: Path, tmp_path: Path
) -> None:
    # No --root, and the working folder has no data/: the run's record says where its data are.
    assert json.loads((finished / "config.json").read_text())["data_root"] == str(data_root.resolve())
    result = run("train", "--resume", finished.resolve(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "already finished" in result.stdout
    # A --root given wins, and is checked: an empty one is refused by name.
    empty = run("train", "--resume", finished.resolve(), "--root", tmp_path / "nothing", cwd=tmp_path)
    assert empty.returncode == 1 and "train-images-idx3-ubyte is missing" in empty.stderr, empty.stderr


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(finished: Path, data_root: Path) -> None:
    before = snapshot(finished)
    result = run("train", "--root", data_root, "--out", finished, "--subset", "600", "--lr", "1e30")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "the loss became" in result.stderr, result.stderr
    assert snapshot(finished) == before
