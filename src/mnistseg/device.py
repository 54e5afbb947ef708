"""Where the tensors live and in what precision the convolutions run."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "fp16")  # what autocast runs
PRECISION_CHOICES = ("auto", *PRECISIONS)  # what a recipe or a command may ask for
# Values of oneDNN's ONEDNN_MAX_CPU_ISA that cap it below its bf16 kernels (its names, upper case).
ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def resolve_device(name: str) -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a usable device.

    ``"auto"`` picks CUDA, then Apple's MPS, then the CPU.

    Raises:
        ValueError: for an unknown name or a device this machine does not have.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but PyTorch sees no CUDA GPU here; use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but this machine has no Apple MPS device; use --device cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda or mps")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX512-BF16 or AMX), as PyTorch will use it.

    Without those instructions (Intel's client chips since Alder Lake, AMD before Zen 4,
    Apple silicon, ...) PyTorch emulates bf16, several times slower than float32. The
    hardware check is PyTorch's own; the kernels PyTorch may use are capped by
    ``ATEN_CPU_CAPABILITY`` (which :func:`torch.backends.cpu.get_cpu_capability` reports) and
    oneDNN's ``ONEDNN_MAX_CPU_ISA``, so both are honoured: with ``ATEN_CPU_CAPABILITY=avx2
    ONEDNN_MAX_CPU_ISA=AVX2`` an AVX-512 machine runs, and is treated, as an AVX2-only one.
    Only x86 counts: on ARM CPUs bf16 has not been measured here, and float32 is kept.
    """
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").strip().upper() in ONEDNN_ISAS_WITHOUT_BF16:
        return False
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(requested: str, device: torch.device) -> str:
    """The precision to run: ``requested``, or for ``"auto"`` what this hardware runs fastest.

    ``"auto"`` is bf16 on a CPU with native bf16 (:func:`cpu_has_native_bf16`) and on a CUDA
    GPU that supports it, else fp32 (Apple's MPS included). Measured in
    ``benchmarks/time_to_quality.py``, per CPU class: on an AVX2-only CPU bf16 trains the
    presets several times slower than fp32; with native bf16 it is as fast or faster.

    Raises:
        ValueError: for a name not in :data:`PRECISION_CHOICES`.
    """
    if requested not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {requested!r}")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def describe_cpu_class() -> dict[str, object]:
    """What decides the CPU's speed choices: PyTorch's kernel level, oneDNN's cap, native bf16."""
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "native_bf16": cpu_has_native_bf16(),
    }


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: ``fp32`` (off), ``bf16`` or ``fp16``.

    Under autocast, convolutions run in the low-precision type while reductions such as
    the loss stay in float32. bf16 keeps float32's range, so it needs no loss scaling; it
    is fast only where the hardware has it (:func:`resolve_precision` decides ``"auto"``).

    Raises:
        ValueError: for ``"auto"`` (resolve it first) or an unknown name, or fp16 off CUDA.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (it needs loss scaling); use bf16 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def set_float32_precision(device: torch.device, precision: str) -> None:
    """Make ``fp32`` mean IEEE float32 on a GPU, as the reference trained.

    cuDNN runs float32 convolutions in TF32 (10-bit mantissa) by default on Ampere and
    newer GPUs; a recipe that asks for ``fp32`` turns that off for this process. Under
    ``bf16``/``fp16`` autocast, or on a CPU, nothing changes.
    """
    if device.type == "cuda" and precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def describe_hardware() -> dict[str, object]:
    """The CPU model and class (:func:`describe_cpu_class`), core count and GPU name (None without one)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, **describe_cpu_class(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu}  # fmt: skip


def use_deterministic_algorithms() -> None:
    """Make PyTorch refuse kernels whose results can vary from run to run.

    On the CPU, mnistseg's runs are bit-identical with or without this. On CUDA it turns
    off cuDNN's autotuning and asks cuBLAS for a fixed workspace; kernels without a
    deterministic version (some of ``grid_sample``'s backward, for one) then raise an error
    instead of varying, and runs are slower.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


PROC_STAT = Path("/proc/stat")


def cpu_times(path: Path = PROC_STAT) -> dict[int, tuple[int, int]]:
    """Per core, ``(idle, total)`` clock ticks since boot, from Linux's ``/proc/stat``."""
    times = {}
    for line in path.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(value) for value in fields[:8]]  # user nice system idle iowait irq softirq steal
            times[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return times


def idle_cores(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cores: set[int]) -> float:
    """How many of ``cores`` were idle between two :func:`cpu_times` readings (a fraction per core, summed)."""
    idle = 0.0
    for core in cores & before.keys() & after.keys():
        idle_ticks = after[core][0] - before[core][0]
        total_ticks = after[core][1] - before[core][1]
        idle += idle_ticks / total_ticks if total_ticks > 0 else 1.0
    return idle


def free_cores(sample_seconds: float = 0.1) -> int:
    """The cores this process may run on that are not busy with other programs right now.

    Two OpenMP threads on one free core wait on each other and run several times slower
    than one thread: so count the idle cores among those the process is allowed (its CPU
    affinity), over a short sample of ``/proc/stat`` (0.1 s: ten clock ticks a core, enough
    to tell a busy core from an idle one). Where that file does not exist (not Linux), all
    allowed cores count as free.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        before = cpu_times()
        time.sleep(sample_seconds)
        after = cpu_times()
    except (OSError, ValueError, IndexError):
        return len(allowed)
    return max(1, min(len(allowed), round(idle_cores(before, after, set(allowed)))))


def set_threads(threads: int | None) -> int:
    """Give PyTorch ``threads`` CPU threads, or, for None, one per free core (:func:`free_cores`).

    An ``OMP_NUM_THREADS`` set by the user (as under ``torchrun``) is left as it is.

    Returns:
        The number of threads PyTorch now uses.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if threads is None and "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    torch.set_num_threads(threads if threads is not None else free_cores())
    return torch.get_num_threads()
