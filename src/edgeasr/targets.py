"""The NPU targets a run builds, and which stages each one needs.

A run chooses its targets with the `npu` config group (conf/npu/: none | x3 | rk3588 | x3_rk3588),
which sets one switch per target, `npu.x3` and `npu.rk3588`. The ONNX families (export, eval_onnx)
and the PyTorch reference always run. A stage that no chosen target needs writes a note in its
metrics and a README.txt in its output folders, and nothing a later stage or `dvc metrics show`
would take as built; each stage declares exactly the switches of the targets it serves (dvc.yaml,
checked by tests/test_targets.py), so turning a target on or off reruns only what it changes.
"""

from typing import Dict, List, Mapping, Optional, Tuple

TARGETS: Dict[str, str] = {  # switch -> what it builds
    "x3": "the Horizon X3 (export_bpu .. eval_quant; settings: the bpu group)",
    "rk3588": "the Rockchip RK3588 (export_rknn, compile_rknn, eval_rknn; settings: the rknn group)",
}
STAGE_TARGETS: Dict[str, Tuple[str, ...]] = {
    "export_bpu": ("x3",),
    "calibrate": ("x3",),
    "eval_bpu": ("x3",),
    "dev_reference": ("x3", "rk3588"),
    "bpu_config": ("x3",),
    "compile": ("x3",),
    "eval_quant": ("x3",),
    "export_rknn": ("rk3588",),
    "compile_rknn": ("rk3588",),
    "eval_rknn": ("rk3588",),
}


def switch_keys(stage: str) -> List[str]:
    """The params.yaml keys `stage` declares for its targets (npu.<target>); none for a stage every
    run needs."""
    return [f"npu.{target}" for target in STAGE_TARGETS.get(stage, ())]


def off_note(stage: str, npu: Mapping[str, bool]) -> Optional[str]:
    """Why `stage` builds nothing in this run, or None when a chosen target needs it. `npu` holds at
    least the switches of the stage's own targets."""
    targets = STAGE_TARGETS[stage]
    if any(npu[target] for target in targets):
        return None
    switches = ", ".join(f"npu.{target}=false" for target in targets)
    choices = " or ".join(f"-S npu={target}" for target in targets)
    return f"{switches}: {stage} is off ({' and '.join(targets)} not chosen; {choices} builds it)"


def targets_report(npu: Mapping[str, bool]) -> Dict[str, str]:
    """What the run built for each target, for the summary: built, or not chosen and how to choose it."""
    return {target: (f"built: {what}" if npu[target] else
                     f"not built: npu.{target}=false (not chosen; -S npu={target} or -S npu=x3_rk3588 builds it)")
            for target, what in TARGETS.items()}
