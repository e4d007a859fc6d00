"""bpu_config: hb_mapper config_encoder.yaml and config_ctc.yaml from the ONNX metadata and the op report;
without the X3 chosen, a note."""


from edgeasr.artifact.metadata import read_metadata
from edgeasr.bpu.calibration import calibration_folders
from edgeasr.bpu.export import x3_graphs
from edgeasr.bpu.hb_config import build_config, write_config
from edgeasr.bpu.placement import read_placement
from edgeasr.bpu.run_on_cpu import resolve_run_on_cpu
from edgeasr.cli import fresh_dir, run_stage, write_off_outputs
from edgeasr.params import load_stage_params, to_dict
from edgeasr.paths import BPU, BPU_CONFIG, CALIBRATION
from edgeasr.targets import off_note


def main(argv: list) -> None:
    params = load_stage_params("bpu_config", argv)
    note = off_note("bpu_config", params.npu)
    if note:
        write_off_outputs(note, [BPU_CONFIG])
        return
    out = fresh_dir(BPU_CONFIG)
    graphs = x3_graphs(BPU)
    reports = {name: read_placement(model) for name, model in graphs.items()}
    run_on_cpu = resolve_run_on_cpu(reports, to_dict(params.bpu.run_on_cpu), params.bpu.float_islands)
    for name, model in graphs.items():
        meta = read_metadata(model)
        folders = calibration_folders(CALIBRATION, name, meta["input_name"].split(";"))
        config = build_config(name, str(model), meta, [str(f) for f in folders.values()], run_on_cpu[name],
                              params.bpu.march, to_dict(params.bpu.compiler))
        write_config(out / f"config_{name}.yaml", config)


if __name__ == "__main__":
    run_stage(main)
