"""The ``mnistseg`` command: one subcommand per pipeline stage.

    mnistseg data       put MNIST (or Fashion-MNIST) under --root
    mnistseg train      train a preset, writing a checkpoint folder
    mnistseg evaluate   test-set counts and scores of a checkpoint
    mnistseg predict    segment your own images
    mnistseg export     write a checkpoint as ONNX
    mnistseg figures    the data-set and augmentation figures
    mnistseg serve      a local web page: draw digits, watch them segment

This module is what the command line accepts (the parser and its argument types) and the
entry point; what each command then does is :mod:`mnistseg.commands`. A mistake a user can
make (a missing folder, a wrong flag value, a damaged file) ends with one line on stderr and
a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from mnistseg.commands import COMMANDS, DEFAULT_ROOT, EXIT_FAILURE

EXIT_USAGE = 2


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not the usage text and then the error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def level_widths(text: str) -> tuple[int, int, int]:
    """argparse type: three positive integers, e.g. ``8,24,64``."""
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated widths like 8,24,64, got {text!r}")
    return tuple(positive_int(part) for part in parts)  # type: ignore[return-value]


def positive_float(text: str) -> float:
    """argparse type: a finite number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0..65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def add_root(parser: argparse.ArgumentParser, resumable: bool = False) -> None:
    if resumable:  # None until resolved: a resumed run reads from its own data root unless told otherwise
        parser.add_argument("--root", type=Path, help="data root folder (default: ./data; --resume: the run's own)")
    else:
        parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="data root folder (default: ./data)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto: cuda, then mps, then cpu)"
    )
    parser.add_argument(
        "--threads", type=positive_int,
        help="CPU threads for PyTorch (default: one per core not busy with other programs)",
    )  # fmt: skip


def add_precision(parser: argparse.ArgumentParser) -> None:
    from mnistseg.device import PRECISION_CHOICES

    parser.add_argument(
        "--precision", choices=PRECISION_CHOICES, default="auto",
        help="autocast precision; auto: bf16 where this CPU or GPU runs it natively, else fp32, whatever the "
        "model trained in; fp32 is the article's (default: auto)",
    )  # fmt: skip


def get_args_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, reusable by tests and scripts."""
    from mnistseg.datasets import DATASETS, preparable_names
    from mnistseg.device import PRECISION_CHOICES
    from mnistseg.inference import ENGINES
    from mnistseg.model import DECODERS
    from mnistseg.recipes import DEFAULT_PRESET, VOTES, presets

    parser = OneLineArgumentParser(prog="mnistseg", description="Semantic segmentation on MNIST.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)

    data = commands.add_parser("data", help="put MNIST or Fashion-MNIST under --root (offline)")
    add_root(data)
    data.add_argument("--dataset", choices=preparable_names(), default="mnist", help="which data set (default: mnist)")
    data.add_argument(
        "--download", action="store_true", help="fall back to torchvision's download if no offline copy (default: off)"
    )

    default = presets()[DEFAULT_PRESET]
    train = commands.add_parser("train", help="train the U-Net and write a checkpoint folder")
    add_root(train, resumable=True)
    add_device(train)
    train.add_argument(
        "--preset",
        choices=tuple(presets()),
        help=f"starting recipe; the flags below override its fields (default: {DEFAULT_PRESET})",
    )
    train.add_argument("--out", type=Path, help="output folder (default: runs/<preset>)")
    train.add_argument(
        "--resume", type=Path, metavar="DIR", help="continue the run in DIR after its last complete epoch"
    )
    train.add_argument(
        "--deterministic", action="store_true",
        help="use only deterministic kernels (bit-identical reruns; CPU runs are already) (default: off)",
    )  # fmt: skip
    switch = argparse.BooleanOptionalAction
    recipe_flags = (
        ("epochs", {"type": positive_int}, "passes over the training split"),
        ("batch_size", {"type": positive_int}, "images per optimizer step"),
        ("lr", {"type": positive_float}, "Adam's learning rate (the one-cycle peak)"),
        ("head_lr_scale", {"type": positive_float}, "the full-resolution 1x1 head learns at lr times this"),
        ("widths", {"type": level_widths, "metavar": "FULL,HALF,QUARTER"}, "U-Net channels per level"),
        ("input_to_head", {"action": switch}, "the 1x1 head also sees the input image"),
        ("decoder", {"choices": DECODERS}, "U-Net decoder: the reference's, or where/what score maps"),
        ("bottleneck_blocks", {"type": positive_int}, "3x3 conv blocks at quarter size (the reference's 2)"),
        ("half_scores", {"action": switch}, "score decoder: class scores from the half-size level too"),
        ("normalize", {"action": switch}, "standardise the input with the data set's pixel mean and std"),
        ("seed", {"type": int}, "seeds split, weights, order and augmentation"),
        ("subset", {"type": positive_int}, "train on the first N training images, split 5:1"),
        ("schedule", {"choices": ("constant", "onecycle")}, "learning-rate schedule"),
        ("precision", {"choices": PRECISION_CHOICES}, "autocast precision; auto: bf16 where it is native, else fp32"),
        ("loader", {"choices": ("batched", "dataset")}, "in-memory batched path or per-item Dataset"),
        ("num_workers", {"type": int}, "DataLoader workers (--loader dataset)"),
        ("channels_last", {"action": switch}, "NHWC memory layout"),
        ("mask_mode", {"choices": ("derive", "warp")}, "batched path: mask from the augmented image, or warped"),
        ("augment", {"action": switch}, "random affine on the training split"),
        ("ema_decay", {"type": float}, "moving average of the weights, 0 for off"),
        ("tta", {"action": switch}, "evaluate the test set with test-time shift averaging"),
        ("vote", {"choices": VOTES}, "post-processing: none, region (majority per stroke) or parts"),
        ("min_part_share", {"type": float}, "parts vote: the share of its region a part needs to keep its class"),
        ("threshold", {"type": float}, "intensity over which a pixel is foreground"),
        ("dataset", {"choices": tuple(DATASETS)}, "data set (scenes: several digits a canvas)"),
    )
    for name, options, text in recipe_flags:
        flag = "--" + name.replace("_", "-")
        train.add_argument(
            flag, dest=name, help=f"{text} (default: {DEFAULT_PRESET}: {getattr(default, name)})", **options
        )
    train.set_defaults(recipe_fields=[name for name, _, _ in recipe_flags])
    train.add_argument("--base-width", type=positive_int, metavar="N", help="a shortcut for --widths N,2N,4N")

    evaluate = commands.add_parser("evaluate", help="test-set TP/FP/FN/IoU/Dice of a checkpoint")
    add_root(evaluate)
    add_device(evaluate)
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="folder written by `mnistseg train`")
    evaluate.add_argument("--json", type=Path, help="summary file (default: <checkpoint>/test_metrics.json)")
    evaluate.add_argument("--figure", type=Path, help="overlay grid (default: <checkpoint>/test_overlay.png)")
    evaluate.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, help="test-time shift averaging (default: as trained)"
    )
    evaluate.add_argument(
        "--vote", choices=VOTES,
        help="none, region (majority per connected stroke) or parts (keeps touching digits apart) "
             "(default: as trained)",
    )  # fmt: skip
    add_precision(evaluate)

    predict = commands.add_parser("predict", help="segment your own images (any size, any polarity)")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files (PNG, JPEG, BMP, ...)")
    predict.add_argument(
        "--checkpoint", type=Path,
        help="trained model (default: the most recently trained under runs/, else the bundled model)",
    )  # fmt: skip
    predict.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)")
    predict.add_argument(
        "--invert", choices=("auto", "yes", "no"), default="auto",
        help="dark ink on light paper? auto judges from the border (default: auto)",
    )  # fmt: skip
    predict.add_argument(
        "--engine", choices=ENGINES, default="torch",
        help="run with PyTorch, or with ONNX Runtime on <checkpoint>/model.onnx (default: torch)",
    )  # fmt: skip
    predict.add_argument(
        "--tta", action=argparse.BooleanOptionalAction,
        help="average over one-pixel shifts; --no-tta turns it off (default: as the checkpoint's recipe)",
    )  # fmt: skip
    add_precision(predict)

    export = commands.add_parser("export", help="write a checkpoint as an ONNX model")
    export.add_argument("--checkpoint", type=Path, required=True, help="folder written by `mnistseg train`")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="model format (default: onnx)")
    export.add_argument("--out", type=Path, help="output file (default: <checkpoint>/model.onnx)")

    figures = commands.add_parser("figures", help="draw the data-set overlay and augmentation figures")
    add_root(figures)
    figures.add_argument("--out", type=Path, default=Path("runs/figures"), help="output folder (default: runs/figures)")
    figures.add_argument("--dataset", choices=preparable_names(), default="mnist", help="data set (default: mnist)")
    figures.add_argument("--seed", type=int, default=0, help="seed of the augmentation draws (default: 0)")

    serve = commands.add_parser("serve", help="a local web page: draw digits, watch them segment live")
    serve.add_argument(
        "--checkpoint", type=Path,
        help="trained model (default: the most recently trained under runs/, else the bundled model)",
    )  # fmt: skip
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 lets other computers on your network in (default: 127.0.0.1)",
    )
    serve.add_argument("--port", type=port_number, default=8000, help="TCP port, 0 for any free one (default: 8000)")
    serve.add_argument(
        "--engine", choices=ENGINES, default="torch",
        help="run with PyTorch, or with ONNX Runtime on <checkpoint>/model.onnx (default: torch)",
    )  # fmt: skip
    serve.add_argument("--device", default="cpu", help="where PyTorch runs: cpu, cuda, ... or auto (default: cpu)")
    serve.add_argument(
        "--tta", action=argparse.BooleanOptionalAction,
        help="average over one-pixel shifts; --no-tta turns it off (default: as the checkpoint's recipe)",
    )  # fmt: skip
    add_precision(serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.version:
        from mnistseg import __version__

        print(f"mnistseg {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE

    from mnistseg.checkpoint import CheckpointError
    from mnistseg.prepare import DataError
    from mnistseg.train import NonFiniteLossError

    # What is alive now (torch, its modules) and when the command ends lives until the process
    # exits. Frozen, the garbage collector stops walking it at each full collection and at exit:
    # with torch loaded, a sizeable part of a short command's time (exploratory A/B runs of
    # `train --preset fast`, not kept as a benchmark).
    gc.freeze()
    try:
        status = COMMANDS[args.command](args)
    except (DataError, CheckpointError, NonFiniteLossError, ValueError) as error:
        print(f"mnistseg {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:  # unwritable folder, full disk, ...
        where = f": {error.filename}" if error.filename else ""
        print(f"mnistseg {args.command}: error: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"mnistseg {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        gc.freeze()
    return status or 0


if __name__ == "__main__":
    raise SystemExit(main())
