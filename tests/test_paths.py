"""edgeasr.paths names exactly the outputs dvc.yaml declares (one place for each path)."""

from pathlib import Path

import yaml

from edgeasr import paths

ROOT = Path(__file__).resolve().parents[1]
# Not stage outputs: sub-folders of one, the folder of all metrics, a report made on demand, the
# offline trainer's corpora.
NOT_DECLARED = {paths.EXPORT_CPU, paths.EXPORT_GPU, paths.EXPORT_SHERPA, paths.METRICS, paths.SWEEP_REPORT,
                 paths.RELEASE_CORPORA, paths.HYPS}


def declared_outputs() -> set:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    found = set()
    for stage in stages.values():
        for entry in stage.get("outs", []) + stage.get("metrics", []):
            found.add(Path(entry if isinstance(entry, str) else next(iter(entry))))
    return found


def test_paths_module_matches_dvc_yaml():
    named = {value for value in vars(paths).values() if isinstance(value, Path)} - NOT_DECLARED
    assert named == declared_outputs()


def test_stages_spell_no_pipeline_path_themselves():
    for stage in (ROOT / "stages").glob("*.py"):
        text = stage.read_text(encoding="utf-8")
        assert '"exp/' not in text and '"metrics/' not in text, f"{stage.name}: use edgeasr.paths"
