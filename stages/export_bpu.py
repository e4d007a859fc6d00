"""export_bpu: the exact 4-D rewrite for the X3 BPU, exported, streamed against PyTorch, ops placed;
exp/bpu/artifacts.json lists the float graphs for every later X3 stage. Without the X3 chosen, a
note."""

from pathlib import Path

import torch

from edgeasr.artifact.manifest import write_manifest
from edgeasr.bpu import export_bpu, placement_summary, rewrite
from edgeasr.bpu.export import x3_artifacts
from edgeasr.bpu.placement import PLACEMENT_COLUMNS, read_placement, write_table
from edgeasr.cli import atomic_dir, run_stage, write_json, write_off_outputs
from edgeasr.decode import TorchBackend
from edgeasr.decode.bpu_backend import OnnxBpuBackend
from edgeasr.export.parity import check_within_tolerance, worst_diffs
from edgeasr.frontend.dataset import load_utterances
from edgeasr.model import load_model
from edgeasr.model.subsampling import min_input_frames
from edgeasr.params import load_stage_params
from edgeasr.paths import BPU, BPU_EXPORT_METRICS, BPU_OPS_METRICS, BPU_OPS_TABLE
from edgeasr.targets import off_note


def main(argv: list) -> None:
    params = load_stage_params("export_bpu", argv)
    note = off_note("export_bpu", params.npu)
    if note:
        write_off_outputs(note, [BPU], [BPU_EXPORT_METRICS, BPU_OPS_METRICS], {BPU_OPS_TABLE: PLACEMENT_COLUMNS})
        return
    torch.set_num_threads(1)
    model, _, _ = load_model(params.model.dir)
    chunk, left = params.streaming.chunk_size, params.streaming.num_decoding_left_chunks
    encoder, ctc = rewrite(model, chunk, left, params.bpu.layer_norm_on_bpu)  # contract + per-module parity
    first_set = next(iter(params.data.test_sets.values()))
    utts = [u.feats for u in load_utterances(Path(first_set), params.export.parity_utts,
                                             min_input_frames(model.encoder.embed.right_context)).utterances]
    with atomic_dir(BPU) as out:  # no exp/bpu unless the streamed parity below holds
        paths = export_bpu(model, encoder, ctc, out)
        parity = worst_diffs(TorchBackend(model), OnnxBpuBackend(paths["encoder"], paths["ctc"], "exact"), utts,
                             chunk, left)
        tolerance = check_within_tolerance("bpu", parity)
        write_manifest(out, "export_bpu", x3_artifacts(out, paths, parity, tolerance))
        reports = {name: read_placement(path) for name, path in paths.items()}
        sizes = {name: round(path.stat().st_size / 1e6, 3) for name, path in paths.items()}
    write_table(BPU_OPS_TABLE, reports)
    write_json(BPU_OPS_METRICS, {name: placement_summary(report) for name, report in reports.items()})
    write_json(BPU_EXPORT_METRICS, {"parity": parity, "tolerance": tolerance, "size_mb": sizes})


if __name__ == "__main__":
    run_stage(main)
