"""export_rknn: the RK3588's own static fixed-cache streaming graph (any model edgeasr loads, left chunks
> 0), streamed against PyTorch; exp/rknn_export/artifacts.json lists it for compile_rknn and eval_rknn.
Without the RK3588 chosen, a note."""

from pathlib import Path

import torch

from edgeasr.artifact.manifest import write_manifest
from edgeasr.cli import atomic_dir, run_stage, write_json, write_off_outputs
from edgeasr.decode import TorchBackend
from edgeasr.decode.fixed_cache_backend import FixedCacheBackend
from edgeasr.export.parity import check_within_tolerance, worst_diffs
from edgeasr.frontend.dataset import load_utterances
from edgeasr.model import load_model
from edgeasr.model.subsampling import min_input_frames
from edgeasr.params import load_stage_params
from edgeasr.paths import RKNN_EXPORT, RKNN_EXPORT_METRICS
from edgeasr.rknn.export import GRAPH, export_fixed_cache, fixed_cache_artifacts
from edgeasr.targets import off_note


def main(argv: list) -> None:
    params = load_stage_params("export_rknn", argv)
    note = off_note("export_rknn", params.npu)
    if note:
        write_off_outputs(note, [RKNN_EXPORT], [RKNN_EXPORT_METRICS])
        return
    torch.set_num_threads(1)
    model, _, _ = load_model(params.model.dir)
    chunk, left = params.streaming.chunk_size, params.streaming.num_decoding_left_chunks
    first_set = next(iter(params.data.test_sets.values()))
    utts = [u.feats for u in load_utterances(Path(first_set), params.export.parity_utts,
                                             min_input_frames(model.encoder.embed.right_context)).utterances]
    with atomic_dir(RKNN_EXPORT) as out:  # no exp/rknn_export unless the streamed parity below holds
        graph = export_fixed_cache(model, chunk, left, out / f"{GRAPH}.onnx")
        parity = worst_diffs(TorchBackend(model), FixedCacheBackend(graph), utts, chunk, left)
        tolerance = check_within_tolerance("rk3588", parity)
        write_manifest(out, "export_rknn", fixed_cache_artifacts(out, graph, parity, tolerance))
        size = round(graph.stat().st_size / 1e6, 3)
    write_json(RKNN_EXPORT_METRICS, {"parity": parity, "tolerance": tolerance, "size_mb": {GRAPH: size}})
    print({"parity": parity, "size_mb": size})


if __name__ == "__main__":
    run_stage(main)
