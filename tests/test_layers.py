"""The package layering stated in edgeasr/__init__.py holds: every import goes to a lower layer."""

import ast
from pathlib import Path

import edgeasr

ROOT = Path(edgeasr.__file__).parent


def imported_units(path: Path) -> set:
    """Top-level edgeasr modules/packages that `path` imports (relative or absolute imports)."""
    rel = path.relative_to(ROOT)
    units = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel.parts[:-1])[: len(rel.parts) - node.level]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "edgeasr":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                units.add(target[0])
            else:  # `from .. import x` at the top: x are modules
                units.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "edgeasr" and len(parts) > 1:
                    units.add(parts[1])
    return units


def unit_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_module_has_a_layer():
    units = {unit_of(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert units == set(edgeasr.LAYERS), "add new modules to edgeasr.LAYERS and its docstring"


def test_imports_go_down_the_layers_only():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        unit = unit_of(path)
        if unit == "__init__":
            continue
        for target in imported_units(path) - {unit}:
            if edgeasr.LAYERS[target] >= edgeasr.LAYERS[unit]:
                wrong.append(f"{path.relative_to(ROOT)} ({unit}, layer {edgeasr.LAYERS[unit]}) imports {target} "
                             f"(layer {edgeasr.LAYERS[target]})")
    assert not wrong, "\n".join(wrong)
