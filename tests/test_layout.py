"""The package's shape: stages import only earlier stages, and importing it stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mnistseg

PACKAGE = Path(mnistseg.__file__).parent
# Pipeline stages in dependency order (docs/architecture.md); a module may import its own
# stage, earlier stages and the support modules, never a later stage. The CLI may import all.
STAGES = {
    "prepare": 0, "datasets": 0,
    "data": 1, "augment": 1, "scenes": 1,
    "model": 2,
    "metrics": 3, "postprocess": 3,
    "figures": 4,
    "inference": 5,
    "evaluate": 6,
    "train": 7,
    "picture": 8, "predict": 8,
    "export": 9,
    "serve": 10,
}  # fmt: skip
SUPPORT = {"files", "device", "recipes", "checkpoint", "model_card", "progress", "distributed", "resume"}


def imported_modules(path: Path) -> set[str]:
    """The ``mnistseg.X`` modules a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnistseg."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("mnistseg."))
    return found


def test_every_module_has_a_place_in_the_map() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "__main__", "cli", "commands"}
    assert modules == set(STAGES) | SUPPORT


def test_the_architecture_page_names_every_module_benchmark_and_script() -> None:
    top = PACKAGE.parents[1]
    page = (top / "docs" / "architecture.md").read_text(encoding="utf-8")
    files = [*PACKAGE.glob("*.py"), *(top / "benchmarks").glob("*.py"), *(top / "benchmarks").glob("*.sh"),
             *(top / "scripts").glob("*.py"), *(top / "notebooks").glob("*.py")]  # fmt: skip
    assert len(files) > 40
    # Each named as it is listed there: at the start of its line in the map, after the indent.
    listed = {line.split()[0] for line in page.splitlines() if line.startswith("  ") and line.split()}
    missing = sorted(str(path.relative_to(top)) for path in files if path.name not in listed)
    assert not missing, f"docs/architecture.md does not list {missing}"


def test_no_stage_imports_a_later_stage() -> None:
    offences = []
    for name, stage in STAGES.items():
        for imported in imported_modules(PACKAGE / f"{name}.py"):
            if STAGES.get(imported, -1) > stage:
                offences.append(f"{name} (stage {stage}) imports {imported} (stage {STAGES[imported]})")
    for name in SUPPORT:  # support modules sit under every stage but the first ones they describe
        for imported in imported_modules(PACKAGE / f"{name}.py"):
            if STAGES.get(imported, -1) > STAGES["model"]:
                offences.append(f"support module {name} imports stage {imported}")
    assert not offences, offences


def test_importing_the_package_loads_neither_matplotlib_nor_torchvision_nor_scipy() -> None:
    # The training process imports the package; SciPy is imported only where regions or strokes are read.
    code = "import sys, mnistseg; print(*(name in sys.modules for name in ('matplotlib', 'torchvision', 'scipy')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False", "False"], result.stderr
