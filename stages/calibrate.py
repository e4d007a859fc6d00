"""calibrate: calibrate.max_samples utterances streamed through the X3 float graphs, in hb_mapper's layout
(the RK3588's compile applies the same rule to its own graph); without the X3 chosen, a note."""

from pathlib import Path

from edgeasr.bpu.calibration import build_calibration
from edgeasr.bpu.export import x3_graphs
from edgeasr.cli import atomic_dir, run_stage, write_off_outputs
from edgeasr.params import load_stage_params
from edgeasr.paths import BPU, CALIBRATION
from edgeasr.targets import off_note


def main(argv: list) -> None:
    params = load_stage_params("calibrate", argv)
    note = off_note("calibrate", params.npu)
    if note:
        write_off_outputs(note, [CALIBRATION])
        return
    graphs = x3_graphs(BPU)
    with atomic_dir(CALIBRATION) as out:  # an interrupted run leaves no exp/calibration for compile to take
        manifest = build_calibration(graphs["encoder"], graphs["ctc"], Path(params.data.cali_list),
                                     params.calibrate.max_samples, params.calibrate.seed, out)
    print(f"calibration: {manifest['utterances_used']} utterances, {manifest['files_per_input']} "
          f"{manifest['note']}".rstrip())


if __name__ == "__main__":
    run_stage(main)
