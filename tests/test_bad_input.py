"""Every bad input a user can type: one clear line, a non-zero exit, nothing damaged.

A table of real command lines, each run as its own process against real broken files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Paths = dict[str, Path]


def mnistseg(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnistseg", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def paths(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """A good data root and checkpoint, and broken copies of each."""
    base = tmp_path_factory.mktemp("bad")
    good = base / "good"
    trained = subprocess.run(
        [sys.executable, "-m", "mnistseg", "train", "--root", str(data_root), "--out", str(good),
         "--subset", "120", "--epochs", "1", "--base-width", "4"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr

    def broken_root(name: str, damage: Callable[[Path], None]) -> Path:
        root = base / name
        shutil.copytree(data_root / "MNIST", root / "MNIST")
        damage(root / "MNIST" / "raw" / "train-images-idx3-ubyte")
        return root

    def flip_one_byte(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[5000] ^= 0xFF
        path.write_bytes(bytes(data))

    def broken_checkpoint(name: str, config: str | None = None, weights: bytes | None = None) -> Path:
        folder = base / name
        shutil.copytree(good, folder)
        if config is not None:
            (folder / "config.json").write_text(config)
        if weights is not None:
            (folder / "model.safetensors").write_bytes(weights)
        return folder

    foreign_config = json.loads((good / "config.json").read_text())
    foreign_config["model"]["widths"] = [16, 32, 64]  # the weights are 8/32/64
    no_state = broken_checkpoint("no-state")
    (no_state / "training_state.safetensors").unlink()
    bad_state = broken_checkpoint("bad-state")
    (bad_state / "training_state.safetensors").write_bytes(b"{}" * 10)
    a_file = base / "a-file"
    a_file.write_text("not a folder")
    return {
        "root": data_root,
        "good": good,
        "missing": base / "does-not-exist",
        "truncated_root": broken_root("truncated", lambda path: path.write_bytes(path.read_bytes()[:1000])),
        "flipped_root": broken_root("flipped", flip_one_byte),
        "truncated_weights": broken_checkpoint(
            "truncated-weights", weights=(good / "model.safetensors").read_bytes()[:500]
        ),
        "garbage_config": broken_checkpoint("garbage-config", config="{ this is not json"),
        "foreign": broken_checkpoint("foreign", config=json.dumps(foreign_config)),
        "no_state": no_state,
        "bad_state": bad_state,
        "a_file": a_file,
    }


TRAIN_SMALL = ("--subset", "120", "--epochs", "1", "--base-width", "4")
CASES: list[tuple[str, Callable[[Paths], list[str | Path]], int, tuple[str, ...]]] = [
    ("missing data root", lambda p: ["train", "--root", p["missing"], "--out", p["missing"] / "o"], 1,
     ("train-images-idx3-ubyte is missing", "mnistseg data")),
    ("data root is a file", lambda p: ["evaluate", "--root", p["a_file"], "--checkpoint", p["good"]], 1, ("is missing",)),
    ("truncated data file", lambda p: ["train", "--root", p["truncated_root"], "--out", p["missing"] / "o", *TRAIN_SMALL], 1,
     ("train-images-idx3-ubyte has the wrong SHA-256",)),
    ("wrong checksum", lambda p: ["data", "--root", p["flipped_root"]], 1, ("train-images-idx3-ubyte has the wrong SHA-256",)),
    ("missing checkpoint", lambda p: ["evaluate", "--checkpoint", p["missing"], "--root", p["root"]], 1, ("does not exist",)),
    ("truncated checkpoint", lambda p: ["evaluate", "--checkpoint", p["truncated_weights"], "--root", p["root"]], 1,
     ("not a valid safetensors file",)),
    ("config is not JSON", lambda p: ["evaluate", "--checkpoint", p["garbage_config"], "--root", p["root"]], 1,
     ("not valid JSON",)),
    ("checkpoint of another config", lambda p: ["evaluate", "--checkpoint", p["foreign"], "--root", p["root"]], 1,
     ("does not fit the model",)),
    ("resume without a state", lambda p: ["train", "--resume", p["no_state"], "--root", p["root"]], 1, ("nothing to resume",)),
    ("resume a damaged state", lambda p: ["train", "--resume", p["bad_state"], "--root", p["root"]], 1,
     ("not a readable training state",)),
    ("resume into another folder", lambda p: ["train", "--resume", p["good"], "--out", p["missing"]], 1, ("drop --out",)),
    ("unknown flag", lambda p: ["train", "--colour", "red"], 2, ("unrecognized arguments: --colour red",)),
    ("unknown command", lambda p: ["frobnicate"], 2, ("invalid choice: 'frobnicate'",)),
    ("unknown preset", lambda p: ["train", "--preset", "turbo"], 2, ("invalid choice: 'turbo'",)),
    ("unknown precision", lambda p: ["train", "--precision", "fp8"], 2, ("invalid choice: 'fp8'",)),
    ("zero epochs", lambda p: ["train", "--epochs", "0"], 2, ("must be at least 1, got 0",)),
    ("negative batch size", lambda p: ["train", "--batch-size", "-5"], 2, ("must be at least 1, got -5",)),
    ("zero subset", lambda p: ["train", "--subset", "0"], 2, ("must be at least 1",)),
    ("learning rate not a number", lambda p: ["train", "--lr", "fast"], 2, ("'fast' is not a number",)),
    ("negative workers", lambda p: ["train", "--root", p["root"], "--num-workers", "-1"], 1,
     ("num_workers must be 0 or more",)),
    ("threshold out of range", lambda p: ["train", "--root", p["root"], "--threshold", "2"], 1, ("threshold must be in [0, 1)",)),
    ("subset too small to split", lambda p: ["train", "--root", p["root"], "--subset", "5"], 1, ("at least 6 images",)),
    ("no CUDA here", lambda p: ["train", "--root", p["root"], "--device", "cuda", *TRAIN_SMALL], 1, ("no CUDA GPU",)),
    ("output under a file", lambda p: ["train", "--root", p["root"], "--out", p["a_file"] / "run", *TRAIN_SMALL], 1,
     ("a-file",)),
    ("serve a missing checkpoint", lambda p: ["serve", "--checkpoint", p["missing"]], 1, ("does not exist",)),
    ("serve onnx before export", lambda p: ["serve", "--checkpoint", p["good"], "--engine", "onnx"], 1,
     ("model.onnx does not exist", "mnistseg export")),
    ("serve on a port out of range", lambda p: ["serve", "--port", "70000"], 2, ("must be between 0 and 65535",)),
    ("serve on an unknown host", lambda p: ["serve", "--checkpoint", p["good"], "--host", "no-such-host.invalid"], 1,
     ("cannot listen on no-such-host.invalid:8000",)),
    ("summary under a file", lambda p: ["evaluate", "--checkpoint", p["good"], "--root", p["root"],
                                        "--json", p["a_file"] / "x.json"], 1, ("a-file",)),
]  # fmt: skip


@pytest.mark.parametrize(("args", "status", "fragments"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_gets_one_clear_line(
    paths: Paths, args: Callable[[Paths], list[str | Path]], status: int, fragments: tuple[str, ...]
) -> None:
    before = snapshot(paths["good"])
    result = mnistseg(*args(paths))
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert snapshot(paths["good"]) == before  # nothing previously written was touched
    assert not paths["missing"].exists()  # a run refused for its data leaves no empty output folder


def test_a_full_disk_is_one_line_and_leaves_no_torn_file(paths: Paths, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = mnistseg("train", "--root", paths["root"], "--out", tiny / "run", "--subset", "120", "--epochs", "1")
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
        assert not list(tiny.rglob("*.tmp")), "a temporary file was left on the full disk"
        for path in (tiny / "run").rglob("*.safetensors"):  # whatever exists is whole
            from mnistseg.checkpoint import load_weights

            load_weights(path)
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


# Run the command line with some optional extras made impossible to import, as after `make run`.
WITHOUT_EXTRAS = "import sys\nfor name in sys.argv[1].split(','):\n    sys.modules[name] = None\nfrom mnistseg.cli import main\nsys.exit(main(sys.argv[2:]))"


@pytest.mark.parametrize(
    ("missing", "args"),
    [
        ("onnx", lambda p: ["export", "--checkpoint", p["good"], "--out", p["missing"] / "model.onnx"]),
        ("onnxruntime", lambda p: ["predict", p["a_file"], "--checkpoint", p["good"], "--engine", "onnx"]),
    ],
    ids=["export without onnx", "the onnx engine without onnxruntime"],
)
def test_a_missing_extra_is_named_in_one_line(
    paths: Paths, missing: str, args: Callable[[Paths], list[str | Path]]
) -> None:
    before = snapshot(paths["good"])
    command = [sys.executable, "-c", WITHOUT_EXTRAS, missing, *map(str, args(paths))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[onnx]'" in lines[0], result.stderr
    assert snapshot(paths["good"]) == before and not (paths["missing"] / "model.onnx").exists()
