"""Data-parallel training: sharding, and real 2-process runs under torchrun on the CPU (Gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnistseg.data import BatchedLoader, load_arrays, masks_from_images, split_indices
from mnistseg.distributed import DistributedContext, per_rank_batch_size


def torchrun(*args: str | Path, processes: int = 2) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command += ["-m", "mnistseg", *map(str, args)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)


def test_per_rank_batch_size() -> None:
    assert per_rank_batch_size(64, DistributedContext(rank=1, world_size=4)) == 16
    with pytest.raises(ValueError, match="32 does not divide among 3 processes"):
        per_rank_batch_size(32, DistributedContext(rank=0, world_size=3))


def test_evaluation_shards_cover_the_split_exactly_once() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1).expand(10, 4, 4).contiguous()
    labels = torch.zeros(10, dtype=torch.int64)
    seen = []
    for rank in range(3):  # 10 images over 3 ranks: 4 + 3 + 3, nothing padded or dropped
        loader = BatchedLoader(images, labels, 2, threshold=-1.0, rank=rank, world_size=3)
        seen += [int(batch[0, 0, 0] * 255 + 0.5) for batch_images, _ in loader for batch in batch_images]
    assert sorted(seen) == list(range(10))


def test_training_shards_are_disjoint_equal_and_reshuffled() -> None:
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1).expand(100, 4, 4).contiguous()
    labels = torch.zeros(100, dtype=torch.int64)

    def epochs(rank: int) -> list[list[int]]:
        loader = BatchedLoader(images, labels, 8, threshold=-1.0, shuffle=True, seed=4, rank=rank, world_size=3)
        return [[int(x[0, 0, 0] * 255 + 0.5) for batch, _ in loader for x in batch] for _ in range(2)]

    shards = [epochs(rank) for rank in range(3)]
    for epoch in range(2):
        parts = [set(shards[rank][epoch]) for rank in range(3)]
        assert [len(shards[rank][epoch]) for rank in range(3)] == [33, 33, 33]  # 100 // 3 each, one left out
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert shards[0][0] != shards[0][1]  # a new order each epoch


def test_two_processes_train_and_their_evaluation_counts_equal_one_process(data_root: Path, tmp_path: Path) -> None:
    # Training itself cannot equal one process's: each rank's BatchNorm sees half the batch.
    # What must hold: one run, written once; validation and test counts summed over the shards
    # equal those of a single process, every pixel counted once.
    out = tmp_path / "run"
    result = torchrun("train", "--root", data_root, "--out", out, "--subset", 600, "--epochs", 1, "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("epoch  1/1") == 1, result.stdout  # only rank 0 prints
    assert "x 2 processes" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    assert sorted(path.name for path in out.iterdir()) == [
        "MODEL_CARD.md", "config.json", "figures", "last.safetensors", "learning_curve.png", "metrics.csv",
        "model.safetensors", "training_state.safetensors",
    ]  # fmt: skip
    assert (out / "metrics.csv").read_text().count("\n") == 2  # header and one epoch, written once

    # Validation ran on two shards; their all-reduced counts cover every val pixel once.
    images, labels = load_arrays(data_root, train=True)
    _, val_index = split_indices(600, seed=0)
    val_masks = masks_from_images(images[val_index].float() / 255, labels[val_index])
    assert config["last"]["val"]["tp"] + config["last"]["val"]["fn"] == int((val_masks > 0).sum())

    sharded = torchrun("evaluate", "--checkpoint", out, "--root", data_root, "--json", tmp_path / "two.json",
                       "--figure", tmp_path / "two.png", "--device", "cpu")  # fmt: skip
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    single = subprocess.run(
        [sys.executable, "-m", "mnistseg", "evaluate", "--checkpoint", str(out), "--root", str(data_root),
         "--json", str(tmp_path / "one.json"), "--figure", str(tmp_path / "one.png"), "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    two, one = (json.loads((tmp_path / name).read_text()) for name in ("two.json", "one.json"))
    assert (two["tp"], two["fp"], two["fn"]) == (one["tp"], one["fp"], one["fn"])
    assert two["per_class"] == one["per_class"]
    # The per-image counts were gathered back into the split's order: the same hardest images.
    assert two["confusion"] == one["confusion"] and two["hardest_images"] == one["hardest_images"]
    test_images, _ = load_arrays(data_root, train=False)
    assert two["tp"] + two["fn"] == int((test_images.float() / 255 > 0.2).sum())


def test_a_batch_that_does_not_divide_is_refused_clearly(data_root: Path, tmp_path: Path) -> None:
    result = torchrun("train", "--root", data_root, "--out", tmp_path, "--subset", 120, "--batch-size", 33)
    assert result.returncode != 0
    assert "mnistseg train: error: the global batch size 33 does not divide among 2 processes" in result.stderr
    assert not (tmp_path / "config.json").exists()
