"""Write the results in the README and in docs/results.md from the benchmarks' JSON: no figure there is typed.

Reads ``benchmarks/results/time_to_quality*.json`` and ``busy_machine*.json``, one pair per CPU
class (native, and ``_avx2``: the same machine run as an AVX2-only CPU), and the other benchmarks'
records (:data:`SECTIONS` says which section each one writes), and replaces what lies between each
page's ``<!-- generated:NAME begin -->`` and ``<!-- generated:NAME end -->`` markers with tables and
sentences made from them: command, date, machine and versions first. ``--check`` changes nothing
and fails when a page differs from what it would write (the test suite runs it). Usage::

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

from choices import FP32_CLASS_WIDTHS, PREVIOUS_FAST
from record import mean_std
from time_to_quality import TARGETS

TOP = Path(__file__).resolve().parents[1]
RESULTS = TOP / "benchmarks" / "results"
# (file suffix, how the class is named)
AVX2_LABEL = "AVX2 only"
CLASSES = (("", "native"), ("_avx2", AVX2_LABEL))
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
        by_size = (record.get("inference") or {}).get("images_per_s_by_batch_size")
        if by_size:  # recorded since the evaluation batch was chosen from it
            sizes = ", ".join(f"{int(size):,} {value:,.0f}" for size, value in by_size.items())
            line += (f" Evaluating the test set ({record['inference']['auto']}), images/s by images per batch: "
                     f"{sizes} (`evaluate` uses {record['inference']['batch_size']:,}).")  # fmt: skip
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


def avx2_class(rows: Measured) -> dict[str, Any] | None:
    """The AVX2 class's ``time_to_quality`` record, if it was measured."""
    return next((record for label, record, _ in rows if label == AVX2_LABEL), None)


def capped(record: dict[str, Any]) -> bool:
    """Whether a record's CPU ran with its kernels capped (``ONEDNN_MAX_CPU_ISA``), as another class would."""
    return bool(record["hardware"].get("onednn_max_cpu_isa"))


def provenance(rows: Measured) -> list[str]:
    versions = rows[0][1]["versions"]
    avx2 = avx2_class(rows)
    how = (
        "The AVX2 class is a machine with AVX-512 (named below) run under `ATEN_CPU_CAPABILITY=avx2 "
        "ONEDNN_MAX_CPU_ISA=AVX2`, as a CPU without AVX-512 or native bf16 (most laptops) runs"
        if avx2 is not None and capped(avx2)
        else "The AVX2 class is a CPU without AVX-512 or native bf16, as most laptops are"
    )
    return [
        "Measured by `benchmarks/time_to_quality.py`, one run per CPU class, each on an otherwise idle machine, "
        f"with torch {versions['torch']}, torchvision {versions['torchvision']} and Python {versions['python']}. "
        f"{how}; the precision in brackets is what `auto` chose there. Where the classes were measured on "
        "different machines, compare ratios within a class, not times across them. Test IoU and times are "
        "mean ± std over the seeds; the reference is timed in the same run.",
        "",
        *(f"* {cpu_class(label, record)}, {record['seeds']} seeds: `{record['command']}`" for label, record, _ in rows),
    ]


def measured_on(rows: Measured) -> list[str]:
    """The README's first paragraph: what the times were measured on."""
    classes = {label: record["hardware"] for label, record, _ in rows}
    first = next(iter(classes.values()))
    # One machine: the AVX2 class was the native machine with its kernels capped (a CPU's name
    # alone does not tell two machines apart: both may be an "AMD EPYC").
    avx2 = avx2_class(rows)
    one_machine = len({(hardware["cpu"], hardware["cores"]) for hardware in classes.values()}) == 1 and (
        avx2 is None or capped(avx2)
    )
    native = classes.get("native")
    kinds = []
    if native:
        kinds.append(f"as it is ({native.get('cpu_capability')} kernels, "
                     f"{'native bf16' if native.get('native_bf16') else 'no native bf16'})"
                     + ("" if one_machine else f" on an {native['cpu']}"))  # fmt: skip
    if avx2 is not None:
        cpu = avx2["hardware"]["cpu"]
        kinds.append(("run as a CPU without AVX-512 (AVX2 only, as most laptops are)" if capped(avx2) else
                      f"on an {cpu} without AVX-512 (AVX2 only, as most laptops are)")
                     + ("" if one_machine or not capped(avx2) else f", an {cpu} with its kernels capped")
                     + ", where mnistseg chooses float32 over bf16 by itself")  # fmt: skip
    where = f"a {first['cores']}-core {first['cpu']} virtual machine" if one_machine else (
        f"{first['cores']}-core virtual machines")  # fmt: skip
    return [f"The times below were measured on {where}" + (f", {' and '.join(kinds)}." if kinds else ".")]


def headline(rows: Measured) -> list[str]:
    """Whether ``fast``'s network alone passes the article's test IoU, said in words."""
    lines = []
    for label, record, _ in rows:
        for preset, summary in record["summaries"].items():
            alone, voted = summary["errors"]["iou"]["mean"], summary["iou"]["mean"]
            lowest = min(run["errors"]["iou"] for run in record["runs"] if run["preset"] == preset)
            if preset == "fast" and lowest >= ARTICLE_IOU:
                lines.append(f"On the {label} class `fast`'s network alone passes the article's recipe "
                             f"({ARTICLE_IOU:.4f}) on every seed (the lowest {lowest:.4f}).")  # fmt: skip
            elif alone < ARTICLE_IOU <= voted:
                lines.append(f"On the {label} class the article's recipe ({ARTICLE_IOU:.4f}) beats `{preset}`'s "
                             f"network alone ({alone:.4f}); `{preset}` passes it with its post-processing "
                             f"({voted:.4f}).")  # fmt: skip
            lines.extend(frontier(record, preset, lowest))
    return ["", " ".join(lines)] if lines else []


def frontier(record: dict[str, Any], preset: str, lowest_alone: float) -> list[str]:
    """Where ``fast`` misses the speed-up asked of it (``TARGETS``): the one point of its frontier measured."""
    reference = reference_seconds(record)
    if preset != "fast" or not reference:
        return []
    wall = record["summaries"]["fast"]["wall_seconds"]["mean"]
    asked = TARGETS["fast_speedup"]
    if reference / wall >= asked:
        return []
    said = f"It takes {reference / wall:,.0f}x less time than the reference, short of {asked:,.0f}x"
    said += f" ({reference / asked:.1f} s)"
    if lowest_alone >= ARTICLE_IOU:
        said += f": {wall:.1f} s is the time its network alone took to clear {ARTICLE_IOU:.4f} on every seed there"
    return [
        f"{said}; no quicker variant was timed in this run, so the best network-alone IoU within "
        f"{asked:,.0f}x is not measured."
    ]


def readme_summary(rows: Measured) -> list[str]:
    return [*provenance(rows), "", *summary_table(rows), *headline(rows)]


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
        "", "### The speed choices of each CPU class (seed 0, the least of up to two rounds)", "",
        *speed_choice_note(rows), "", *speed_table(rows),
        "", "### The data path and a busy machine", "", *machine_lines(rows),
        "", "### Targets, as the benchmark printed them", "", *target_lines(rows),
    ]  # fmt: skip


def speed_choice_note(rows: Measured) -> list[str]:
    """What the speed choices trained: the default run's network in each precision, or (older records)
    each preset as a user runs it with that flag."""
    same = [label for label, record, _ in rows if record.get("speed_choices_network")]
    older = [label for label, record, _ in rows if not record.get("speed_choices_network")]
    sentences = []
    if same:
        sentences.append(f"{' and '.join(same)}: each choice trains the network of the preset's default run there, "
                         "in that precision or layout.")  # fmt: skip
    if older:
        sentences.append(
            f"{' and '.join(older)} (measured before that): each preset as a user runs it with that flag, so a "
            "precision that resolves to float32 also takes what the preset changes on a CPU that trains in "
            "float32 (`recipes.FP32_CPU_CHANGES`: `fast` the float32 class's network; `best`'s epochs do not "
            "enter, it is timed for one), and `--precision bf16` there timed the native class's network of that day."
        )
    return [" ".join(sentences)]


def cpu_pages(write: Callable[[Measured], list[str]]) -> Callable[[Path], list[str]]:
    """A section made from every CPU class's ``time_to_quality`` and ``busy_machine`` results."""

    def from_results(results: Path) -> list[str]:
        rows = measured(results)
        if not rows:
            raise ValueError(f"no time_to_quality results in {results}")
        return write(rows)

    return from_results


def load(results: Path, name: str) -> dict[str, Any]:
    """One benchmark's JSON record.

    Raises:
        ValueError: when the file is missing.
    """
    path = results / name
    if not path.is_file():
        raise ValueError(f"{path} is missing")
    return json.loads(path.read_text())


def made_by(record: dict[str, Any], name: str) -> str:
    """E.g. ``"`python benchmarks/choices.py ...`, 2026-12-02, AMD EPYC (2 cores), torch 2.14.1, Python 3.11.7
    (`benchmarks/results/choices.json`)"``: the command, date, machine and versions of a record."""
    hardware, versions = record.get("hardware", {}), record.get("versions", {})
    where = hardware.get("gpu") or hardware.get("cpu", "?")
    where += f" ({hardware['cores']} CPU cores)" if "cores" in hardware else ""
    torch = str(versions.get("torch", "?")) if isinstance(versions, dict) else str(versions)
    torch = torch if torch.startswith("torch") else f"torch {torch}"  # some records wrote "torch 2.11 ..."
    python = f", Python {versions['python']}" if isinstance(versions, dict) and "python" in versions else ""
    return (
        f"`{record.get('command', '?')}`, {record.get('date', 'date not recorded')}, {where}, {torch}{python} "
        f"(`benchmarks/results/{name}`)"
    )


def choices_table(record: dict, name: str) -> list[str]:
    """A ``choices.py`` record's variants as a table: network alone, its lowest seed, voted, seconds."""
    body = [[f"{v['variant']} (`{' '.join(v['flags'])}`)" if v["flags"] else f"**{v['variant']}**",
             pm(v["val_iou"], 4), f"{min(run['val_iou'] for run in v['runs']):.4f}", pm(v["val_iou_voted"], 4),
             pm(v["wall_seconds"], 1)] for v in record["variants"]]  # fmt: skip
    return [
        f"{made_by(record, name)}; validation IoU, mean ± std over {record['seeds']} seeds:", "",
        *table(["`fast` variant", "validation IoU, network alone", "lowest seed", "with the vote",
                "whole process (s)"], body),
    ]  # fmt: skip


def fast_choices(results: Path) -> list[str]:
    """The ``fast`` variants on validation (``choices.py``), and what the comparison says."""
    record = load(results, "choices.json")
    variants = record["variants"]
    plain = next(v for v in variants if not v["flags"])
    lines = [*choices_table(record, "choices.json"), ""]
    sentences = []
    previous = next((v for v in variants if v["flags"] == PREVIOUS_FAST), None)
    if previous:
        sentences.append(
            f"The previous `fast` needed its vote: its network alone {pm(previous['val_iou'], 4)}, with the vote "
            f"{pm(previous['val_iou_voted'], 4)}, its whole process {pm(previous['wall_seconds'], 1)} s; this "
            f"preset's network alone {pm(plain['val_iou'], 4)} in {pm(plain['wall_seconds'], 1)} s."
        )
    concat = next((v for v in variants if v["flags"][:2] == ["--decoder", "concat"]), None)
    if concat:
        change = concat["val_iou"]["mean"] - plain["val_iou"]["mean"]
        ratio = concat["wall_seconds"]["mean"] / plain["wall_seconds"]["mean"]
        sentences.append(
            f"With the U-Net's concat decoder instead of the score decoder the network alone scores {change:+.4f} "
            f"and the whole process takes {ratio:.2f}x the preset's time."
        )
    fp32_class = next((v for v in variants if v["flags"] == FP32_CLASS_WIDTHS), None)
    if fp32_class:  # run where bf16 is native: the preset there against the float32 class's widths
        gained = plain["val_iou"]["mean"] - fp32_class["val_iou"]["mean"]
        faster = 1 - plain["wall_seconds"]["mean"] / fp32_class["wall_seconds"]["mean"]
        time_word = f"in {faster:.0%} less time" if faster >= 0 else f"taking {-faster:.0%} longer"
        sentences.append(
            f"Where bf16 is native, 16 channels at full resolution (at a rate of 0.03) score {gained:+.4f} "
            f"(network alone) against the float32 class's 8/32/64 at 0.024, {time_word}."
        )
    lines.append(" ".join(sentences))
    alone = max(variants, key=lambda v: v["val_iou"]["mean"])  # the network without the vote
    if alone is plain:
        lines += ["", "No variant's network alone scores higher on validation than the preset's."]
    else:
        lowest = min(run["val_iou"] for run in alone["runs"])
        ratio = alone["wall_seconds"]["mean"] / plain["wall_seconds"]["mean"]
        lines += ["", f"The highest validation IoU of the network alone is the variant \"{alone['variant']}\": "
                  f"{pm(alone['val_iou'], 4)} (lowest seed {lowest:.4f}) against the preset's "
                  f"{pm(plain['val_iou'], 4)}, its whole process {ratio:.2f}x the preset's."]  # fmt: skip
    return lines


def fast_choices_float32(results: Path) -> list[str]:
    """The float32 class's ``fast`` against the native class's network (``choices.py --cpu-class float32``)."""
    record = load(results, "choices_float32.json")
    lines = choices_table(record, "choices_float32.json")
    passing = [v for v in record["variants"] if min(run["val_iou"] for run in v["runs"]) >= ARTICLE_IOU]
    said = "; ".join(f'"{v["variant"]}"' for v in passing) if passing else "none"
    sentences = [f"Network alone at or above the article's test IoU ({ARTICLE_IOU:.4f}) on every seed: {said}."]
    avx2 = load(results, "time_to_quality_avx2.json")
    reference = reference_seconds(avx2)
    if passing and reference:  # the frontier, against the class's reference timed in another run
        quickest = min(passing, key=lambda v: v["wall_seconds"]["mean"])
        where = "its kernels capped at AVX2 on another machine" if capped(avx2) else f"{avx2['date']}"
        sentences.append(
            f"The quickest of them takes {reference / quickest['wall_seconds']['mean']:,.0f}x less time than the "
            f"reference recipe as extrapolated for this CPU class in `time_to_quality_avx2.json` (another run, "
            f"{where}): a ratio across two runs, not one measured within one."
        )
    return [*lines, "", " ".join(sentences)]


def best_search(results: Path) -> list[str]:
    """The exploratory runs behind ``best`` (``best_search.json``), one seed each, on validation."""
    record = load(results, "best_search.json")
    body = [[row["run"], f"{row['fg_bg']:,}", f"{row['misread_images']:,}",
             f"{row['iou']:.4f} → {row['voted_iou']:.4f}"] for row in record["rows"]]  # fmt: skip
    heads = record["where_head"]
    best_epoch, last_epoch = (heads[key] for key in heads if key != "what")
    return [
        f"{made_by(record, 'best_search.json')}. {record['what']}; {record['note']}.", "",
        *table(["`best` step (one seed: a lead, not a measured gain)", "fg/bg errors", "whole digits misread",
                "validation IoU → with the vote"], body), "",
        f"The threshold is learnt from the masks, to the level: the head's weights put the boundary at "
        f"{best_epoch['boundary']} at the best epoch (input weight {best_epoch['input_weight']}, bias "
        f"{best_epoch['bias']} in logit difference) and at {last_epoch['boundary']} at the last "
        f"({record['level_51_check']}).",
    ]  # fmt: skip


def spread(values: list[float], digits: int) -> str:
    """Mean ± std of several values; one value as it is."""
    return pm(mean_std(values), digits) if len(values) > 1 else f"{values[0]:,.{digits}f}"


def gpu_runs(results: Path) -> list[str]:
    """The presets' one GPU run (``time_to_quality_cuda.json``) and the reference's 20 epochs there."""
    record, reference = load(results, "time_to_quality_cuda.json"), load(results, "reproduce_reference_cuda.json")
    body = []
    for preset in dict.fromkeys(run["preset"] for run in record["runs"]):
        runs = [run for run in record["runs"] if run["preset"] == preset]
        seeds = ", ".join(str(run["seed"]) for run in runs)
        body.append([f"`{preset}` as it then was, seed{'s' if len(runs) > 1 else ''} {seeds}",
                     *(spread([run[key] for run in runs], digits)
                       for key, digits in (("iou", 4), ("wall_seconds", 1), ("train_seconds", 1)))])  # fmt: skip
    by_hand = (results / "gpu_h200_best_seeds_1_2.txt").read_text().splitlines()
    tested = [float(line.rsplit("IoU ", 1)[1].split()[0]) for line in by_hand if line.startswith("test set")]
    body.append(["`best` as it then was, seeds 1, 2: trained by hand after the time limit (their test lines in "
                 "`gpu_h200_best_seeds_1_2.txt`)", ", ".join(f"{iou:.4f}" for iou in tested), "—", "—"])  # fmt: skip
    body.append([f"reference recipe, 20 epochs, seed 0 (best epoch {reference['best_epoch']})",
                 f"{reference['test']['iou']:.4f}", "—", f"{reference['train_seconds']:.0f}"])  # fmt: skip
    return [
        f"{made_by(record, 'time_to_quality_cuda.json')}"
        f"{' (cut short by its time limit)' if record.get('partial') else ''}; "
        f"the reference: {made_by(reference, 'reproduce_reference_cuda.json')}.", "",
        *table([record["hardware"].get("gpu", "GPU"), "test IoU", "whole process (s)", "training (s)"], body),
    ]  # fmt: skip


def counts(value: dict[str, Any]) -> str:
    return f"{value['tp']:,} / {value['fp']:,} / {value['fn']:,}"


def reproducing(results: Path) -> list[str]:
    """The article's recipe trained here (CPU, two epochs; GPU, twenty) beside the article's numbers."""
    cpu, gpu = load(results, "reproduce_reference.json"), load(results, "reproduce_reference_cuda.json")
    article = gpu["article"]
    first, second = (epoch["article"] for epoch in gpu["epochs"][:2])
    epoch_20 = gpu["epochs"][19]["mnistseg"]["iou"]
    best_val = max(epoch["mnistseg"]["iou"] for epoch in gpu["epochs"])
    rows = [
        ["article (its log and text)", counts(first), f"{first['iou']:.4f}", counts(second), f"{second['iou']:.4f}",
         f"{article['epoch_20_validation_iou']}", counts(article["test"]), f"{article['test']['iou']:.4f}"],
        ["mnistseg, CPU, per-item path, seed 0", *(cell for epoch in cpu["epochs"][:2] for cell in
         (counts(epoch["mnistseg"]), f"{epoch['mnistseg']['iou']:.4f}")), "—", "—", "—"],
        ["mnistseg, GPU, batched path, seed 0", *(cell for epoch in gpu["epochs"][:2] for cell in
         (counts(epoch["mnistseg"]), f"{epoch['mnistseg']['iou']:.4f}")), f"{epoch_20:.4f} (best {best_val:.4f})",
         counts(gpu["test"]), f"**{gpu['test']['iou']:.4f}**"],
    ]  # fmt: skip
    epoch_seconds = sum(epoch["seconds"] for epoch in gpu["epochs"]) / len(gpu["epochs"])
    return [
        f"* CPU, the first two epochs: {made_by(cpu, 'reproduce_reference.json')}: {cpu['wall_seconds']:,.0f} s for "
        "the whole process.",
        f"* GPU, all 20 epochs: {made_by(gpu, 'reproduce_reference_cuda.json')}: {gpu['recipe']}; "
        f"{epoch_seconds:.1f} s an epoch; the test set scored once, with the checkpoint of the best validation epoch "
        f"({gpu['best_epoch']}). {gpu['source']}.", "",
        *table(["", "epoch 1 TP / FP / FN", "IoU", "epoch 2 TP / FP / FN", "IoU", "epoch 20 val IoU",
                "test TP / FP / FN", "test IoU"], rows, numeric_from=2), "",
        f"Test IoU {gpu['test']['iou']:.4f} against the article's {article['test']['iou']:.4f}; TP "
        f"{abs(gpu['test']['tp'] - article['test']['tp']):,} pixels from the article's {article['test']['tp']:,}.",
    ]  # fmt: skip


def inference_engines(results: Path) -> list[str]:
    """Images/s of the engines and layouts on the test set (``onnx_inference.json``)."""
    record = load(results, "onnx_inference.json")
    names = {"pytorch_fp32": "PyTorch, float32 (NCHW)",
             "pytorch_fp32_channels_last": "PyTorch, float32, `channels_last`",
             "pytorch_bf16_channels_last": "PyTorch, bf16 autocast, `channels_last`",
             "onnxruntime_fp32": "ONNX Runtime, float32"}  # fmt: skip
    speeds = record["images_per_s"]
    body = [
        [names.get(key, key), f"{value:,.0f}", f"{value / speeds['pytorch_fp32']:.2f}x"]
        for key, value in speeds.items()
    ]
    return [
        f"{made_by(record, 'onnx_inference.json')}; the 10,000 test images in batches of 1,000, best of three passes:",
        "", *table(["engine", "images/s", "vs PyTorch float32"], body), "",
        f"The two engines give the same argmax on {record['argmax_agreement']:.2%} of the pixels of the first 1,000 "
        "test images.",
    ]  # fmt: skip


def pen_widths(results: Path) -> list[str]:
    """How many drawn and printed digits the bundled model reads right (``pen_widths.json``)."""
    record = load(results, "pen_widths.json")
    plain = record["rows_without_normalising"]
    body = [
        [kind, f"{right}/{total}", f"{plain[kind][0]}/{plain[kind][1]}"]
        for kind, (right, total) in record["rows"].items()
    ]
    right, total = (sum(counts[i] for counts in record["rows"].values()) for i in (0, 1))
    plain_right = sum(counts[0] for counts in plain.values())
    body.append(["**all**", f"**{right}/{total} ({right / total:.1%})**", f"{plain_right}/{total} "
                 f"({plain_right / total:.1%})"])  # fmt: skip
    return [f"{made_by(record, 'pen_widths.json')}; model: {record['model']}:", "",
            *table(["drawn with", "read right", "without the pen normalisation"], body)]  # fmt: skip


TOUCHING_FILES = ("touching_digits_bundled_val.json", "touching_digits_bundled_test.json")
# The same model and digits read off the mask alone, before a wide patch of one class could part in two.
WHOLE_PATCH_FILES = tuple(name.replace("bundled_", "bundled_whole_patches_") for name in TOUCHING_FILES)


TOUCHING_KINDS = ("pairs", "triples", "printed pairs")


def _share(right: int, rows: int) -> str:
    return f"{right}/{rows} ({right / rows:.1%})"


def touching_table(record: dict[str, Any], name: str) -> list[str]:
    """One ``touching_digits`` record (``name``, its file): who made it, then a row per rule."""
    header = ["rule", "MNIST pairs", "MNIST triples", "printed pairs", "single digits read", "single digits IoU"]
    body = []
    for rule in record["rules"]:
        cells = [record[kind][rule] for kind in TOUCHING_KINDS]
        own = " (the model's own)" if rule == record.get("model_rule") else ""
        single = record["single digits"][rule]
        body.append([f"`{rule}`{own}", *(_share(c["read_right"], c["rows"]) + "; different digits "
                                         + _share(*c["different_digits"]) for c in cells),
                     _share(single["read_right"], single["rows"]),
                     f"{record['single digits IoU'][rule]:.4f}"])  # fmt: skip
    model = record.get("model", record["checkpoint"])
    return [f"{made_by(record, name)}; {record['split']} digits; model: {model}:", "", *table(header, body)]


def touching_digits(results: Path) -> list[str]:
    """How many rows of touching digits the bundled model reads right, per rule (``touching_digits_*.json``)."""
    lines = []
    for name, whole_name in zip(TOUCHING_FILES, WHOLE_PATCH_FILES, strict=True):
        record = load(results, name)
        lines += [*touching_table(record, name), ""]
        if record.get("part_wide") and (results / whole_name).is_file():
            whole, own = load(results, whole_name), record["model_rule"]
            before = ", ".join(f"{kind} {_share(whole[kind][own]['read_right'], whole[kind][own]['rows'])}"
                               for kind in (*TOUCHING_KINDS, "single digits"))  # fmt: skip
            lines += [f"Read off the mask alone, a wide patch of one class always one digit "
                      f"({made_by(whole, whole_name)}), the model's own rule read: {before}.", ""]  # fmt: skip
    return lines[:-1]


def touching_digits_best(results: Path) -> list[str]:
    """The same rows read by a ``best`` checkpoint, trained on single digits (``touching_digits_best_test.json``)."""
    name = "touching_digits_best_test.json"
    return touching_table(load(results, name), name)


def scaling(results: Path) -> list[str]:
    """One process against two under torchrun (``scaling.json``)."""
    record = load(results, "scaling.json")
    body = [[str(row["processes"]), f"{row['wall_seconds']:.1f}", f"{row['images_per_s']:,.0f}", f"{row['iou']:.4f}",
             f"{row['relative_throughput']:.2f}x"] for row in record["rows"]]  # fmt: skip
    return [
        f"{made_by(record, 'scaling.json')}; {record['note']}:",
        "",
        *table(["processes", "wall s", "training images/s", "test IoU", "throughput vs 1 process"], body),
    ]


# (page, section name, what writes it from the results folder)
SECTIONS: tuple[tuple[str, str, Callable[[Path], list[str]]], ...] = (
    ("README.md", "measured-on", cpu_pages(measured_on)),
    ("README.md", "results-summary", cpu_pages(readme_summary)),
    ("docs/results.md", "results-cpu-classes", cpu_pages(results_page)),
    ("docs/results.md", "fast-choices", fast_choices),
    ("docs/results.md", "fast-choices-float32", fast_choices_float32),
    ("docs/results.md", "best-search", best_search),
    ("docs/results.md", "gpu", gpu_runs),
    ("docs/reproducing.md", "reproducing", reproducing),
    ("docs/your-images.md", "inference-engines", inference_engines),
    ("docs/your-images.md", "pen-widths", pen_widths),
    ("docs/your-images.md", "touching-digits", touching_digits),
    ("docs/your-images.md", "touching-digits-best", touching_digits_best),
    ("docs/distributed.md", "scaling", scaling),
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
    pages: dict[Path, tuple[str, str]] = {}  # each page: (as read, as it would be written)
    for page, name, write in SECTIONS:
        path = args.top / page
        if path not in pages:
            current = path.read_text(encoding="utf-8")
            pages[path] = (current, current)
        try:
            pages[path] = (pages[path][0], render(pages[path][1], name, write(args.results)))
        except ValueError as error:
            print(f"report.py: error: {path}, section {name}: {error}", file=sys.stderr)
            return 1
    stale = [path for path, (current, generated) in pages.items() if generated != current]
    if not args.check:
        for path in stale:
            path.write_text(pages[path][1], encoding="utf-8")
    if args.check and stale:
        print(f"report.py: {', '.join(map(str, stale))} differ from the benchmarks' JSON; run benchmarks/report.py",
              file=sys.stderr)  # fmt: skip
        return 1
    print("the results sections match benchmarks/results/" if args.check else f"rewrote {len(stale)} page(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
