"""What each ``mnistseg`` command does, once :mod:`mnistseg.cli` has parsed its arguments.

One ``run_*`` function per subcommand, each importing its pipeline stage when it runs (so
that ``mnistseg --help`` and a bad flag answer at once). :data:`COMMANDS` maps the
subcommand's name to it; a command returns its exit status, or None for 0.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mnistseg.recipes import Recipe

EXIT_FAILURE = 1
DEFAULT_ROOT = Path("data")


def run_data(args: argparse.Namespace) -> None:
    from mnistseg.datasets import get_dataset

    folder = get_dataset(args.dataset).prepare(args.root, download=args.download)
    print(f"{args.dataset} ready in {folder} (4 files, SHA-256 verified)")


def resumed_run(args: argparse.Namespace, overrides: dict[str, object]) -> tuple[Recipe, Path]:
    """The recipe and data root of the run in ``--resume DIR``: a ``--root`` given wins (and is checked
    against the data set's checksums when read); ``fit`` refuses any change to the recipe."""
    from mnistseg.checkpoint import CheckpointError, read_record

    if args.out is not None and args.out != args.resume:
        raise ValueError("--resume continues in its own folder; drop --out")
    record = read_record(args.resume)
    if args.preset is not None and args.preset != record.recipe.name:
        raise CheckpointError(
            f"cannot resume {args.resume}: it was trained with preset {record.recipe.name!r}, not {args.preset!r}"
        )
    root = args.root or (Path(record.data_root) if record.data_root else DEFAULT_ROOT)
    return replace(record.recipe, **overrides), root


def run_train(args: argparse.Namespace) -> None:
    from mnistseg.device import resolve_device, set_threads, use_deterministic_algorithms
    from mnistseg.distributed import barrier, setup, teardown
    from mnistseg.model import widths_from_base
    from mnistseg.recipes import DEFAULT_PRESET, get_preset
    from mnistseg.train import fit

    overrides = {name: getattr(args, name) for name in args.recipe_fields if getattr(args, name) is not None}
    if args.base_width is not None:
        if args.widths is not None:
            raise ValueError("--base-width N is a shortcut for --widths N,2N,4N: give one of them")
        overrides["widths"] = widths_from_base(args.base_width)
    if args.resume is not None:
        recipe, root = resumed_run(args, overrides)
        out = args.resume
    else:
        preset = args.preset or DEFAULT_PRESET
        recipe, root = get_preset(preset, resolve_device(args.device), **overrides), args.root or DEFAULT_ROOT
        out = args.out or Path("runs") / preset
    if args.deterministic:
        use_deterministic_algorithms()
    set_threads(args.threads)
    context, device = setup(args.device)
    try:
        record = fit(recipe, root, out, device, context=context, resume=args.resume is not None)
        barrier(context)
    finally:
        teardown(context)
    if context.is_main and record.best is not None:
        print(
            f"best validation IoU {record.best['val']['iou']:.4f} at epoch {record.best['epoch']}; checkpoint in {out}"
        )


def run_evaluate(args: argparse.Namespace) -> None:
    from mnistseg.device import set_threads
    from mnistseg.distributed import barrier, setup, teardown
    from mnistseg.evaluate import evaluate_checkpoint, format_table

    set_threads(args.threads)
    context, device = setup(args.device)
    try:
        summary = evaluate_checkpoint(
            args.checkpoint,
            args.root,
            device,
            args.json,
            args.figure,
            tta=args.tta,
            vote=args.vote,
            context=context,
            precision=args.precision,
            log=print if context.is_main else None,
        )
        barrier(context)
    finally:
        teardown(context)
    if not context.is_main:
        return
    print(format_table(summary))
    how = f"{summary['images']:,} images, {summary['precision']}" + (", test-time shifts" if summary["tta"] else "")
    how += f", {summary['vote']} vote" if summary["vote"] != "none" else ""
    print(
        f"test set ({how}): TP {summary['tp']:,}  FP {summary['fp']:,}  FN {summary['fn']:,}  "
        f"IoU {summary['iou']:.4f}  Dice {summary['dice']:.4f}"
    )
    json_path = args.json or args.checkpoint / "test_metrics.json"
    print(f"wrote {json_path} and {args.figure or args.checkpoint / 'test_overlay.png'}")


def run_predict(args: argparse.Namespace) -> int:
    from mnistseg.checkpoint import default_checkpoint
    from mnistseg.inference import load_for_inference
    from mnistseg.picture import ImageInputError
    from mnistseg.predict import predict_file

    model = load_for_inference(
        args.checkpoint or default_checkpoint(), args.engine, "cpu", tta=args.tta, precision=args.precision
    )
    names = model.record.class_names
    print(f"model: {model.describe()}")
    failures = 0
    for path in args.images:
        try:
            summary = predict_file(path, model, args.out, names, args.invert)
        except ImageInputError as error:
            print(f"mnistseg predict: error: {path}: {error}", file=sys.stderr)
            failures += 1
            continue
        digits = " ".join(str(digit) for digit in summary["digits"]) or "(none found)"
        print(f"{path}: {digits}")
    return EXIT_FAILURE if failures else 0


def run_export(args: argparse.Namespace) -> None:
    from mnistseg.export import export_onnx

    print(f"wrote {export_onnx(args.checkpoint, args.out)}")


def run_figures(args: argparse.Namespace) -> None:
    from mnistseg.figures import draw_dataset_figures

    dataset_overlay, augmentation = draw_dataset_figures(args.root, args.out, args.dataset, args.seed)
    print(f"wrote {dataset_overlay} (training images with their masks)")
    print(f"wrote {augmentation} (the article's random affine, which the reference and best presets train with; "
          "fast trains without it)")  # fmt: skip


def run_serve(args: argparse.Namespace) -> None:
    from mnistseg.serve import SegmentationServer, load_segmenter

    segmenter = load_segmenter(args.checkpoint, args.engine, args.device, args.tta, args.precision)
    try:
        server = SegmentationServer((args.host, args.port), segmenter)
    except OSError as error:  # port taken, no such address, ...
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    if not server.loopback_only:
        print(f"mnistseg serve: warning: listening on {args.host}: others on your network can use it", file=sys.stderr)
    print(f"mnistseg serve: open {server.url} (model {segmenter.description}; Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("mnistseg serve: stopped", file=sys.stderr)
    finally:
        server.server_close()


COMMANDS = {
    "data": run_data,
    "train": run_train,
    "evaluate": run_evaluate,
    "predict": run_predict,
    "export": run_export,
    "figures": run_figures,
    "serve": run_serve,
}
