"""compile_rknn: with npu.rk3588 on, the RK3588's own fixed-cache graph (exp/rknn_export) compiled by
rknn-toolkit2 (INT8, calibrated from the calibrate stage's utterance rule, written in the toolkit's list
format) into a .rknn file, with the toolkit's per-layer accuracy analysis and its NPU/CPU op table,
listed in exp/rknn/artifacts.json. With rknn.max_cer_delta, the fewest layer groups in float16
(hybrid quantization) that keep the simulator's CER − PyTorch on the dev split within it, searched
with real builds (rknn.hybrid), and that build is the one written. Without the RK3588 chosen, a note."""

from pathlib import Path

from edgeasr.artifact.manifest import read_manifest, write_manifest
from edgeasr.artifact.metadata import StreamGeometry, read_metadata
from edgeasr.cli import atomic_dir, run_stage, write_csv, write_json, write_off_outputs
from edgeasr.evaluate.engine import compute_engine
from edgeasr.evaluate.reference import read_reference, reference_symbols, reference_utterances
from edgeasr.evaluate.sensitivity import DEV_SET, study_settings
from edgeasr.frontend.tokens import id_to_token
from edgeasr.params import load_stage_params, to_dict
from edgeasr.paths import DEV_REFERENCE, RKNN, RKNN_COMPILE_METRICS, RKNN_EXPORT, RKNN_LAYERS_TABLE, RKNN_OPS_TABLE
from edgeasr.rknn.compile import ARTIFACT, calibrate_rknn, compile_rknn, rknn_artifacts
from edgeasr.rknn.export import FLOAT_ARTIFACT, GRAPH
from edgeasr.rknn.hybrid import HybridEvaluator, budget_study, quantized_tensors, study_dev, tensor_groups
from edgeasr.rknn.simulate import simulator_opener
from edgeasr.rknn.toolkit import find_python, rknn_config
from edgeasr.targets import off_note

LAYER_COLUMNS = ["graph", "group", "tensor", "op", "single_cos", "entire_cos"]
OP_COLUMNS = ["graph", "id", "op", "target", "name"]
ALL_INT8_KEPT = ("rknn_bytes", "ops_on_npu", "output_cosine", "build_seconds")  # beside a hybrid build's


def main(argv: list) -> None:
    params = load_stage_params("compile_rknn", argv)
    note = off_note("compile_rknn", params.npu)
    if note:
        write_off_outputs(note, [RKNN], [RKNN_COMPILE_METRICS],
                          {RKNN_LAYERS_TABLE: LAYER_COLUMNS, RKNN_OPS_TABLE: OP_COLUMNS})
        return
    rknn = to_dict(params.rknn)
    budget = rknn["max_cer_delta"]
    settings = study_settings(params.data.dev_list, rknn["sensitivity_utts"], budget, "rknn") if budget is not None \
        else None
    python = find_python(rknn["toolkit_python"])
    graph = read_manifest(RKNN_EXPORT).artifacts[FLOAT_ARTIFACT].path(RKNN_EXPORT, GRAPH)
    calibration = {"data_list": params.data.cali_list, **to_dict(params.calibrate)}
    with atomic_dir(RKNN) as out:
        dataset, samples = calibrate_rknn(graph, calibration, out)
        metrics, layers, ops = compile_rknn(python, rknn, graph, dataset, samples, out)
        float16 = {}
        if settings:
            study, float16 = search_budget(python, rknn, graph, dataset, layers, settings, out)
            if float16:  # the chosen build is the one deployed: built again, exported, analysed
                all_int8 = metrics[GRAPH]
                metrics, layers, ops = compile_rknn(python, rknn, graph, dataset, samples, out,
                                                    [t for tensors in float16.values() for t in tensors])
                metrics["all_int8"] = {k: all_int8[k] for k in ALL_INT8_KEPT}
            metrics["budget"] = study
        write_manifest(out, "compile_rknn", rknn_artifacts(out, rknn, graph, float16))
    write_csv(RKNN_LAYERS_TABLE, LAYER_COLUMNS, layers)
    write_csv(RKNN_OPS_TABLE, OP_COLUMNS, ops)
    write_json(RKNN_COMPILE_METRICS, metrics)
    print({k: v for k, v in metrics.items() if k not in ("config", "budget")})


def search_budget(python: Path, rknn: dict, graph: Path, dataset: Path, layers: list, settings: tuple, out: Path
                  ) -> tuple:
    """The float16 search on the dev split (its simulator logs in out/budget) -> (study, {group: tensors}),
    streamed at the graph's own chunk and left chunks (its metadata)."""
    dev_list, utts = settings
    groups = tensor_groups(quantized_tensors(python, rknn_config(rknn), graph, dataset, out))
    stream = StreamGeometry.from_metadata(read_metadata(graph))
    reference, utterances, opts = study_dev(read_reference(DEV_REFERENCE, DEV_SET),
                                            reference_utterances(DEV_REFERENCE, DEV_SET, str(dev_list), 0), utts,
                                            stream.chunk_size, stream.num_left_chunks)
    logs = out / "budget"
    logs.mkdir()
    with compute_engine() as (engine, cache):
        evaluator = HybridEvaluator(lambda chosen: rknn_artifacts(out, rknn, graph, chosen)[ARTIFACT], out, groups,
                                    reference, utterances, opts, id_to_token(reference_symbols(DEV_REFERENCE)),
                                    engine, cache, simulator_opener(python, logs))
        return budget_study(evaluator, layers, rknn["max_cer_delta"])


if __name__ == "__main__":
    run_stage(main)
