"""The NPU targets: each stage declares exactly the switches of the targets it serves, and a stage no
chosen target needs says so in one line."""

from pathlib import Path

import pytest
import yaml

from edgeasr.params import compose
from edgeasr.targets import STAGE_TARGETS, TARGETS, off_note, switch_keys, targets_report

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(set(STAGES) - {"summary"}))
def test_a_stage_declares_exactly_its_targets_switches(name):
    """So that turning a target on or off reruns exactly the stages that serve it (the summary, which
    reports them all, declares the whole `npu` section)."""
    declared = [key for key in STAGES[name].get("params", []) if isinstance(key, str) and key.startswith("npu")]
    assert declared == switch_keys(name)
    script = (ROOT / STAGES[name]["cmd"].split()[1]).read_text()
    assert (f'off_note("{name}", params.npu)' in script) == (name in STAGE_TARGETS)


@pytest.mark.parametrize("choice,built", [("none", []), ("x3", ["x3"]), ("rk3588", ["rk3588"]),
                                          ("x3_rk3588", ["x3", "rk3588"])])
def test_each_choice_sets_one_switch_per_target(tmp_path, choice, built):
    compose(tmp_path / "params.yaml", [f"npu={choice}"], ROOT / "conf")
    npu = yaml.safe_load((tmp_path / "params.yaml").read_text())["npu"]
    assert npu == {"name": choice, **{target: target in built for target in TARGETS}}
    off = sorted(stage for stage in STAGE_TARGETS if off_note(stage, npu))
    on_x3 = {"export_bpu", "calibrate", "eval_bpu", "dev_reference", "bpu_config", "compile", "eval_quant"}
    on_rk3588 = {"export_rknn", "compile_rknn", "dev_reference", "eval_rknn"}  # dev_reference: its budget search
    expected_on = (on_x3 if "x3" in built else set()) | (on_rk3588 if "rk3588" in built else set())
    assert off == sorted(set(STAGE_TARGETS) - expected_on)
    report = targets_report(npu)
    assert [t for t, what in report.items() if what.startswith("built")] == built


def test_the_note_names_the_switches_and_the_choice(monkeypatch):
    npu = {"x3": False, "rk3588": False}
    assert off_note("export_bpu", npu) == "npu.x3=false: export_bpu is off (x3 not chosen; -S npu=x3 builds it)"
    monkeypatch.setitem(STAGE_TARGETS, "shared_stage", ("x3", "rk3588"))  # a stage serving both targets
    assert off_note("shared_stage", npu) == ("npu.x3=false, npu.rk3588=false: shared_stage is off (x3 and rk3588 "
                                             "not chosen; -S npu=x3 or -S npu=rk3588 builds it)")
    assert off_note("shared_stage", {"x3": False, "rk3588": True}) is None
    assert off_note("eval_quant", {"x3": True}) is None
    assert off_note("eval_rknn", {"rk3588": False}).startswith("npu.rk3588=false: eval_rknn is off")
