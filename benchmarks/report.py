"""Write the results in the README and in docs/results.md from the benchmarks' JSON: no figure there is typed.

Reads ``benchmarks/results/time_to_quality*.json`` and ``busy_machine*.json``, one pair per CPU
class (native, and ``_avx2``: the same machine run as an AVX2-only CPU), and replaces what lies
between each page's ``<!-- generated:NAME begin -->`` and ``<!-- generated:NAME end -->`` markers
with tables made from them. ``--check`` changes nothing and fails when a page differs from what
it would write (the test suite runs it). Usage::

    .venv/bin/python benchmarks/report.py           # rewrite the sections
    .venv/bin/python benchmarks/report.py --check   # exit 1 if a page is stale or hand-edited
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from record import mean_std

TOP = Path(__file__).resolve().parents[1]
RESULTS = TOP / "benchmarks" / "results"
# (file suffix, how the class is named)
CLASSES = (("", "native"), ("_avx2", "AVX2 only"))
# The article's published test counts (quoted, not measured here).
ARTICLE = {"tp": 1_247_593, "fp": 21_385, "fn": 31_288}
ARTICLE_IOU = ARTICLE["tp"] / (ARTICLE["tp"] + ARTICLE["fp"] + ARTICLE["fn"])

Measured = list[tuple[str, dict[str, Any], dict[str, Any] | None]]  # (class, time_to_quality, busy_machine)


def measured(results: Path) -> Measured:
    """Each CPU class that has a finished ``time_to_quality`` result, with its busy-machine result if any."""
    rows = []
    for suffix, label in CLASSES:
        path, busy = results / f"time_to_quality{suffix}.json", results / f"busy_machine{suffix}.json"
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is not None and "summaries" in record:
            rows.append((label, record, json.loads(busy.read_text()) if busy.is_file() else None))
    return rows


def pm(value: dict[str, float], decimals: int) -> str:
    """``"0.9658 ± 0.0026"``: a mean ± std record, with thousands separators."""
    return f"{value['mean']:,.{decimals}f} ± {value['std']:,.{decimals}f}"


def table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> list[str]:
    """A Markdown table, its columns from ``numeric_from`` on right-aligned."""
    rule = ["---" if index < numeric_from else "---:" for index in range(len(header))]
    return ["| " + " | ".join(line) + " |" for line in (header, rule, *rows)]


def cpu_class(label: str, record: dict[str, Any]) -> str:
    """E.g. ``"native: AMD EPYC, 2 cores, AVX512 kernels, native bf16"``."""
    hardware = record["hardware"]
    bf16 = "native bf16" if hardware.get("native_bf16") else "no native bf16"
    return f"{label}: {hardware['cpu']}, {hardware['cores']} cores, {hardware.get('cpu_capability')} kernels, {bf16}"


def auto_precision(record: dict[str, Any]) -> str:
    return record.get("inference", {}).get("auto") or "?"


def reference_seconds(record: dict[str, Any]) -> float | None:
    return record["reference"]["dataset"]["total_seconds"] if record.get("reference") else None


def summary_table(rows: Measured) -> list[str]:
    """The README's table: per CPU class, the reference's cost and both presets."""
    body = []
    for label, record, _ in rows:
        reference = reference_seconds(record)
        name = f"{label} ({auto_precision(record)})"
        body.append([name, "reference: the article's counts, its recipe timed here", "—", f"{ARTICLE_IOU:.4f}",
                     f"{reference:,.0f} (extrapolated)" if reference else "—", "—", "1x"])  # fmt: skip
        for preset, summary in record["summaries"].items():
            ratio = reference / summary["wall_seconds"]["mean"] if reference else None
            body.append([name, f"`{preset}`", pm(summary["errors"]["iou"], 4), f"**{pm(summary['iou'], 4)}**",
                         pm(summary["wall_seconds"], 1), pm(summary["train_seconds"], 1),
                         f"{ratio:,.0f}x" if ratio else "—"])  # fmt: skip
    header = ["CPU class (precision)", "", "test IoU, the network alone", "with its post-processing",
              "whole process (s)", "training (s)", "less time than the reference"]  # fmt: skip
    return table(header, body, numeric_from=2)


def seeds_table(rows: Measured) -> list[str]:
    body = []
    for label, record, _ in rows:
        for run in record["runs"]:
            body.append([label, f"`{run['preset']}`", str(run["seed"]), f"{run['wall_seconds']:.1f}",
                         f"{run['train_seconds']:.1f}", f"{run['peak_rss_gib']:.2f}", f"{run['val_iou']:.4f}",
                         f"{run['tp']:,}", f"{run['fp']:,}", f"{run['fn']:,}", f"{run['errors']['iou']:.4f}",
                         f"{run['iou']:.4f}"])  # fmt: skip
    header = ["CPU class", "preset", "seed", "whole process (s)", "training (s)", "peak RSS (GiB)", "val IoU",
              "TP", "FP", "FN", "test IoU, argmax", "test IoU"]  # fmt: skip
    return table(header, body, numeric_from=2)


def breakdown_lines(rows: Measured) -> list[str]:
    lines = []
    for label, record, _ in rows:
        for preset, summary in record["summaries"].items():
            parts = ", ".join(f"{part} {value['mean']:.1f} s" for part, value in summary["breakdown_seconds"].items())
            lines.append(f"* {label}, `{preset}`: {parts}.")
    return lines


ERROR_KEYS = (("fg_bg", "fg/bg errors"), ("fg_bg_near_threshold", "of them within 0.05 of the threshold"),
              ("wrong_digit", "wrong-digit pixels"), ("misread_images", "whole digits misread"),
              ("split_regions", "regions holding two digits"))  # fmt: skip


def errors_table(rows: Measured) -> list[str]:
    body = []
    for label, record, _ in rows:
        for preset, summary in record["summaries"].items():
            errors = summary["errors"]
            body.append([label, f"`{preset}`", *(f"{errors[key]['mean']:,.0f}" for key, _ in ERROR_KEYS),
                         f"{errors['iou']['mean']:.4f} → {errors['voted_iou']['mean']:.4f}"])  # fmt: skip
    header = ["CPU class", "preset", *(title for _, title in ERROR_KEYS), "test IoU before → after the vote"]
    return table(header, body, numeric_from=2)


def ablation_table(rows: Measured) -> list[str]:
    body = []
    for label, record, _ in rows:
        for preset, per_seed in (record.get("validation_ablations") or {}).items():
            for kind in per_seed[0]:
                values = [seed[kind] for seed in per_seed]
                gains = [seed[kind] - seed["raw"] for seed in per_seed]
                mean = sum(values) / len(values)
                gain = "—" if kind == "raw" else pm(mean_std(gains), 4)
                body.append([label, f"`{preset}`", kind, f"{mean:.4f}", gain])
    return table(["CPU class", "preset", "weights and post-processing", "validation IoU", "gain over raw, by seed"],
                 body, numeric_from=3)  # fmt: skip


def speedup_lines(rows: Measured) -> list[str]:
    lines = []
    for label, record, _ in rows:
        speedup, reference = record.get("speedup"), record.get("reference")
        if not speedup or not reference:
            continue
        per_item, batched = reference["dataset"], reference["batched"]
        flops = speedup["flops"]
        lines.append(
            f"* {label}: the reference recipe trained {per_item['train_images_per_s']:.1f} images/s and validated "
            f"{per_item['val_images_per_s']:.1f} images/s through its own per-item path over "
            f"{per_item['measured_batches']} timed batches: {per_item['epoch_seconds']:,.0f} s an epoch, "
            f"{per_item['total_seconds']:,.0f} s for 20 epochs (extrapolated); the batched path "
            f"{batched['total_seconds']:,.0f} s. `fast` takes {speedup['total']:,.0f}x less = implementation "
            f"{speedup['implementation']:.2f}x (per-item → batched, same recipe) × recipe {speedup['recipe']:,.0f}x; "
            f"arithmetic {flops['reference'] / 1e12:,.0f} TFLOP against {flops['fast'] / 1e12:.2f} TFLOP "
            f"({speedup['flops_ratio_reference_to_fast']:,.0f}x)."
        )
    return lines


def speed_table(rows: Measured) -> list[str]:
    body = []
    for label, record, _ in rows:
        slowdowns = record.get("default_precision_slowdown") or {}
        for name, choices in (record.get("speed_choices") or {}).items():
            what = f"train `{name}`" + (" (1 epoch, 10,000 images)" if name == "best" else "") + ", s"
            cells = [f"{choices[key]['train_seconds']:.1f}" for key in ("default", "fp32", "bf16", "default, NCHW")]
            cells[0] += f" ({choices['default']['precision']})"
            body.append([label, what, *cells, f"{slowdowns[f'train {name}']:+.1%}"])
        inference = record.get("inference")
        if inference:
            speeds, auto = inference["images_per_s"], inference["auto"]
            cells = [f"{speeds[auto]:,.0f} ({auto})", f"{speeds['fp32']:,.0f}", f"{speeds['bf16']:,.0f}",
                     f"{speeds[auto + ', NCHW']:,.0f}"]  # fmt: skip
            body.append([label, "evaluate the test set, images/s", *cells, f"{slowdowns['evaluate']:+.1%}"])
    header = ["CPU class", "what is timed", "default (auto)", "fp32", "bf16", "default, NCHW", "default vs the faster"]
    return table(header, body, numeric_from=2)


def machine_lines(rows: Measured) -> list[str]:
    lines = []
    for label, record, busy in rows:
        paths = [
            f"`{name}` {path['trainer_images_per_s']:,.0f} against {path['bare_images_per_s']:,.0f} images/s "
            f"({path['overhead']:.1%})"
            for name, path in record.get("data_path", {}).items()
        ]
        line = f"* {label}: data path (trainer against a bare loop on one batch): {'; '.join(paths)}."
        if busy is not None:
            line += (
                f" A busy machine: `fast` {busy['idle_seconds']:.1f} s idle, {busy['busy_seconds']:.1f} s beside "
                f"a program spinning on one core ({busy['ratio']:.2f}x, {busy['threads']['busy']} thread), "
                f"{busy['forced_two_threads_busy_seconds']:.1f} s forcing 2 threads ({busy['forced_ratio']:.2f}x)."
            )
        lines.append(line)
    return lines


def target_lines(rows: Measured) -> list[str]:
    lines = []
    for label, record, busy in rows:
        targets = dict(record.get("targets") or {})
        if busy is not None:
            targets[f"busy machine <= {busy['target_ratio']}x"] = busy["met"]
        listed = "; ".join(f"{name} **{'met' if ok else 'NOT MET'}**" for name, ok in targets.items())
        lines.append(f"* {label}: {listed}")
    return lines


def provenance(rows: Measured) -> list[str]:
    versions = rows[0][1]["versions"]
    return [
        "Measured by `benchmarks/time_to_quality.py`, one run per CPU class, each on an otherwise idle machine, "
        f"with torch {versions['torch']}, torchvision {versions['torchvision']} and Python {versions['python']}. "
        "The AVX2 class is the same machine run under `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`, as a "
        "CPU without AVX-512 or native bf16 (most laptops) runs; the precision in brackets is what `auto` chose "
        "there. Test IoU and times are mean ± std over the seeds; the reference is timed in the same run.",
        "",
        *(f"* {cpu_class(label, record)}, {record['seeds']} seeds: `{record['command']}`" for label, record, _ in rows),
    ]


def readme_summary(rows: Measured) -> list[str]:
    return [*provenance(rows), "", *summary_table(rows)]


def results_page(rows: Measured) -> list[str]:
    return [
        *provenance(rows), "", *summary_table(rows), "",
        "*Whole process*: `mnistseg train` from start to exit, measured from outside. *Training*: the epochs as "
        "the trainer times them, validation included. *The network alone*: its own argmax, with the preset's "
        "test-time shifts where it has them (`best`), before the region vote; *with its post-processing*: the "
        "preset as `mnistseg evaluate` scores it. Test counts are scored in float32, as the article scored them; "
        f"the article's test IoU ({ARTICLE_IOU:.4f}) is quoted from it.",
        "", "### Per seed", "", *seeds_table(rows),
        "", "### Where the whole process's time goes (mean over seeds)", "", *breakdown_lines(rows),
        "", "### Where the test errors are (mean over seeds; pixels, the network's argmax before the vote)", "",
        *errors_table(rows),
        "", "### Post-processing, on validation (the last epoch's weights, per seed)", "", *ablation_table(rows),
        "", "### Where the speed-up comes from", "", *speedup_lines(rows),
        "", "### The speed choices of each CPU class (seed 0, the least of up to two rounds)", "", *speed_table(rows),
        "", "### The data path and a busy machine", "", *machine_lines(rows),
        "", "### Targets, as the benchmark printed them", "", *target_lines(rows),
    ]  # fmt: skip


# (page, section name, what writes it)
SECTIONS: tuple[tuple[str, str, Callable[[Measured], list[str]]], ...] = (
    ("README.md", "results-summary", readme_summary),
    ("docs/results.md", "results-cpu-classes", results_page),
)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name} begin -->", f"<!-- generated:{name} end -->"


def render(text: str, name: str, lines: list[str]) -> str:
    """``text`` with the section between ``name``'s markers replaced by ``lines``.

    Raises:
        ValueError: when the page lacks the markers.
    """
    begin, end = markers(name)
    if begin not in text or end not in text:
        raise ValueError(f"no {begin} ... {end} section to write")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n" + "\n".join(lines) + f"\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a page differs (default: rewrite them)")
    parser.add_argument("--top", type=Path, default=TOP, help="the repository's top folder (default: this one)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    rows = measured(args.results)
    if not rows:
        print(f"report.py: error: no time_to_quality results in {args.results}", file=sys.stderr)
        return 1
    stale = []
    for page, name, write in SECTIONS:
        path = args.top / page
        current = path.read_text(encoding="utf-8")
        try:
            generated = render(current, name, write(rows))
        except ValueError as error:
            print(f"report.py: error: {path}: {error}", file=sys.stderr)
            return 1
        if generated != current:
            stale.append(path)
            if not args.check:
                path.write_text(generated, encoding="utf-8")
    if args.check and stale:
        print(f"report.py: {', '.join(map(str, stale))} differ from the benchmarks' JSON; run benchmarks/report.py",
              file=sys.stderr)  # fmt: skip
        return 1
    print("the results sections match benchmarks/results/" if args.check else f"rewrote {len(stale)} page(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
