"""The `fast` preset on a machine that is doing something else: one core busy.

A laptop always has something else running. Two OpenMP threads on one free core wait on
each other, so `mnistseg train` counts the cores that are idle when it starts
(``device.free_cores``: the process's CPU affinity, and ``/proc/stat`` over 0.1 s) and
uses one thread per free core unless ``--threads`` says otherwise. This runs the whole
`mnistseg train --preset fast` process on the idle machine, then again with a busy loop
(another Python process spinning) beside it, and prints the ratio; the target is 2.5x. For
comparison, a third run beside the busy loop forces ``--threads 2``: what every run did before
the free cores were counted.

Usage::

    .venv/bin/python benchmarks/busy_machine.py --root data
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import benchmark_parser, write_record

TARGET_RATIO = 2.5


def train_fast(root: Path, out: Path, extra: list[str]) -> tuple[float, str]:
    """Whole-process wall seconds of ``mnistseg train --preset fast`` and its header line."""
    command = [sys.executable, "-m", "mnistseg", "train", "--preset", "fast", "--root", str(root), "--out", str(out)]
    started = time.perf_counter()
    result = subprocess.run([*command, "--device", "cpu", *extra], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    header = next(line for line in result.stdout.splitlines() if line.startswith("training "))
    return wall, header


def main() -> None:
    parser = benchmark_parser(__doc__, "busy_machine.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        idle, idle_header = train_fast(args.root, Path(scratch) / "idle", args.train_args)
        print(f"idle: {idle:.1f} s  ({idle_header})", flush=True)
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)  # let it take its core
            busy, busy_header = train_fast(args.root, Path(scratch) / "busy", args.train_args)
            print(f"one core busy: {busy:.1f} s  ({busy_header})", flush=True)
            forced, _ = train_fast(args.root, Path(scratch) / "forced", [*args.train_args, "--threads", "2"])
        finally:
            spinner.kill()
            spinner.wait()
    threads = {name: int(re.search(r"\((\d+) CPU threads\)", header)[1])
               for name, header in (("idle", idle_header), ("busy", busy_header))}  # fmt: skip
    ratio = busy / idle
    verdict = "met" if ratio <= TARGET_RATIO else "NOT MET"
    print(f"one core busy: {busy:.1f} s with {threads['busy']} thread(s) (idle: {threads['idle']}); "
          f"{ratio:.2f}x the idle time; target <= {TARGET_RATIO}x: {verdict}")  # fmt: skip
    print(f"one core busy, --threads 2 forced: {forced:.1f} s, {forced / idle:.2f}x the idle time")
    write_record(args.json, idle_seconds=idle, busy_seconds=busy, ratio=ratio, threads=threads,
                 forced_two_threads_busy_seconds=forced, forced_ratio=forced / idle,
                 target_ratio=TARGET_RATIO, met=ratio <= TARGET_RATIO)  # fmt: skip


if __name__ == "__main__":
    main()
