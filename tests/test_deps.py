"""dvc.yaml's code deps are derived from the imports, not trusted: every module inside src/edgeasr that
a stage script runs (its import closure, lazy imports included) is covered by a declared dep (the
file, or a folder above it), so editing it reruns the stage."""

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# Modules whose edits cannot change any output of a stage, with the reason: left out of dvc.yaml.
CANNOT_CHANGE_OUTPUTS: Dict[str, str] = {
    "src/edgeasr/errors.py": "the user-error type: its edits change an error's class, never an output",
}


def module_file(dotted: str) -> Path | None:
    """src/ path of an edgeasr module or package (its __init__.py), or None outside edgeasr."""
    if dotted.split(".")[0] != "edgeasr":
        return None
    base = SRC.joinpath(*dotted.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def dotted_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Set[Path]:
    """edgeasr module files `path` imports, relative and absolute, at any depth of the file."""
    if SRC not in path.parents:  # a stage script: no package, no relative imports
        package = ""
    else:
        package = dotted_name(path) if path.name == "__init__.py" else dotted_name(path).rpartition(".")[0]
    found: Set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                target = module_file(".".join(parts[:i]))
                if target is not None:
                    found.add(target)
    return found


def import_closure(script: Path) -> Set[Path]:
    todo, seen = [script], set()
    while todo:
        current = todo.pop()
        for target in imports_of(current):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def uncovered(stage: dict) -> list:
    script = ROOT / stage["cmd"].split()[1]
    deps = [ROOT / d for d in stage.get("deps", []) if not d.startswith("${")]
    missing = []
    for module in sorted(import_closure(script) | {script}):
        rel = str(module.relative_to(ROOT))
        if rel in CANNOT_CHANGE_OUTPUTS:
            continue
        if not any(module == dep or dep in module.parents for dep in deps):
            missing.append(rel)
    return missing


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_module_a_stage_runs_is_a_declared_dep(name):
    missing = uncovered(stages()[name])
    assert not missing, f"dvc.yaml stage {name} runs but does not declare: {', '.join(missing)}"


def test_the_check_fails_on_a_removed_dep():
    """Removing one declared package from a stage is caught, and the message names what it runs."""
    stage = dict(stages()["eval_onnx"])
    stage["deps"] = [d for d in stage["deps"] if d != "src/edgeasr/artifact"]
    missing = uncovered(stage)
    assert "src/edgeasr/artifact/manifest.py" in missing


def test_the_closure_follows_relative_and_lazy_imports():
    closure = {str(p.relative_to(ROOT)) for p in import_closure(ROOT / "stages" / "eval_onnx.py")}
    assert "src/edgeasr/evaluate/sherpa.py" in closure  # evaluate.backends: from .sherpa import ...
    assert "src/edgeasr/cli.py" in closure and "src/edgeasr/__init__.py" in closure
    params = {str(p.relative_to(ROOT)) for p in imports_of(SRC / "edgeasr" / "params.py")}
    assert "src/edgeasr/cli.py" in params  # imported inside `if __name__ == "__main__"`


def test_modules_left_out_exist():
    for rel in CANNOT_CHANGE_OUTPUTS:
        assert (ROOT / rel).is_file(), rel


def stale_lock_entries(status: Dict[str, Any]) -> List[str]:
    """What `dvc status --json` reports as changed since dvc.lock among what a checkout holds: code
    deps and committed metrics ('modified'), params (a dict under params.yaml). Data and exp outputs
    are absent from a checkout ('deleted', 'not in cache') and do not count."""
    stale = []
    for stage, entries in status.items():
        for entry in entries:
            for kind, changes in (entry.items() if isinstance(entry, dict) else ()):
                for path, state in changes.items():
                    if isinstance(state, dict):
                        stale += [f"{stage}: {path} {key} {value}" for key, value in state.items()]
                    elif state == "modified":
                        stale.append(f"{stage}: {path} {state} ({kind})")
    return stale


def test_dvc_lock_matches_the_committed_code_params_and_metrics():
    """A change to a stage's code, params or metrics lands with the dvc.lock a `dvc repro` wrote for it
    (6640c9f edited trainer.py and the lock kept its old hash until a fresh clone's repro noticed)."""
    out = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    stale = stale_lock_entries(json.loads(out))
    assert not stale, "dvc.lock is out of date (run dvc repro from a fresh clone): " + "; ".join(stale[:5])


def test_stale_lock_entries_reads_dvc_status():
    status = {"synth": [{"changed deps": {"src/edgeasr/cli.py": "modified", "data/demo": "deleted"}},
                        {"changed outs": {"data/demo": "not in cache", "metrics/train.json": "modified"}}],
              "calibrate": [{"changed deps": {"params.yaml": {"calibrate": "modified"}}}], "summary": ["always changed"]}
    assert stale_lock_entries(status) == ["synth: src/edgeasr/cli.py modified (changed deps)",
                                          "synth: metrics/train.json modified (changed outs)",
                                          "calibrate: params.yaml calibrate modified"]
