"""INT8 sensitivity by layer group, the float-set search, hb_mapper's `mix`, and a fragile model the
search must repair by name."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile
import torch
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationMethod
from onnxruntime.quantization.calibrate import TensorData, TensorsData

from conftest import condition_, noise_bursts, write_model_dir
from edgeasr.bpu import export_bpu, rewrite
from edgeasr.bpu.calibration import build_calibration
from edgeasr.bpu.compile import CalibrationSettings, calibrate_graph
from edgeasr.bpu.hb_config import build_config, run_on_cpu_list, with_run_on_cpu
from edgeasr.bpu.int8_groups import node_group
from edgeasr.bpu.placement import node_macs, read_placement
from edgeasr.bpu.run_on_cpu import resolve_run_on_cpu
from edgeasr.bpu.ranges import fake_quant_cosine, mix_ranges
from edgeasr.artifact.metadata import read_metadata
from edgeasr.decode import DecodeOptions, TorchBackend, ctc_greedy_search, stream_encode
from edgeasr.demo.fragile import with_outlier_channel
from edgeasr.frontend.tokens import detokenize, id_to_token as tokens_of
from edgeasr.errors import EdgeAsrError
from edgeasr.evaluate.engine import ComputeSettings, Engine, ShardCache
from edgeasr.evaluate.reference import write_reference
from edgeasr.evaluate.sensitivity import (DEV_SET, STUDY_MODES, DevScore, SubsetEvaluator, dev_scorer, int8_study,
                                         search_float_set, sensitivity_table, study_settings)
from edgeasr.frontend import compute_fbank, read_audio
from edgeasr.model import load_model

ARCH = "conformer_nopos_conv2d8_relu_causal_bn"  # inside the X3 contract
CHUNK, LEFT = 4, 2
OUTLIER = 1000.0  # the scale of the one FFN channel that breaks per-tensor INT8


@pytest.mark.parametrize("graph,node,group", [
    ("encoder", "/embed/conv/conv.0/Conv", "embed"),
    ("encoder", "/encoders.3/self_attn/linear_q/MatMul", "encoders.3.self_attn"),
    ("encoder", "/encoders.0/feed_forward_macaron/w_1/Conv", "encoders.0.feed_forward_macaron"),
    ("encoder", "/encoders.1/feed_forward/experts.2/w_1/Conv", "encoders.1.feed_forward"),
    ("encoder", "/encoders.2/Add_3", "encoders.2.residual"),
    ("encoder", "/Concat_1", "cache_io"),
    ("ctc", "/ctc_lo/convs.0/Conv", "ctc"),
    ("encoder", "/ctc_lo/MatMul", "ctc"),  # the RK3588's one graph holds the CTC head
])
def test_node_groups_are_module_scopes(graph, node, group):
    assert node_group(graph, node) == group


def test_study_settings_refuse_a_budget_without_dev_utterances():
    assert study_settings("dev.list", 100, None) == (Path("dev.list"), 100)
    assert study_settings(None, 100, None) is None and study_settings("dev.list", 0, None) is None
    with pytest.raises(EdgeAsrError, match=r"bpu\.max_cer_delta=0\.3: .*data\.dev_list=None"):
        study_settings(None, 100, 0.3)


class FakeEvaluator:
    """CER − PyTorch = the sum of the quantized groups' costs, plus an interaction: `b` costs only
    while `a` is quantized too."""

    COSTS = {"culprit": 2.5, "a": 0.2, "b": 0.2, "c": 0.05, "d": 0.0}

    def __init__(self):
        self.evaluations = 0

    def evaluate(self, float_groups=frozenset(), only=frozenset()):
        self.evaluations += 1
        quantized = set(only) if only else set(self.COSTS) - set(float_groups)
        cost = sum(self.COSTS[g] for g in quantized if g != "b") + (0.2 if {"a", "b"} <= quantized else 0.0)
        return DevScore(10.0 + cost, round(cost, 4), 1.0 - cost / 10, 1.0 - cost / 100)


def test_search_keeps_the_fewest_groups_and_drops_redundant_ones():
    evaluator = FakeEvaluator()
    ranked = ["culprit", "b", "a", "c", "d"]  # b measured alone looks as costly as a
    result = search_float_set(evaluator, ranked, 0.3)
    # culprit, then b (0.25 left): met; trying b back in INT8 gives 0.45, so b stays.
    assert result["met"] and result["float_groups"] == ["culprit", "b"]
    result = search_float_set(FakeEvaluator(), ranked, 0.1)
    # culprit, b, a -> 0.05; then b is redundant once a is float (a alone carries the interaction),
    # and culprit is not: all INT8, 3 additions, 2 tries back.
    assert result["float_groups"] == ["culprit", "a"] and result["result"]["cer_delta"] == 0.05
    assert result["evaluations"] == len(result["trail"]) == 6
    assert search_float_set(FakeEvaluator(), ranked, 5.0)["float_groups"] == []


def tensors_data(ranges):
    return TensorsData(CalibrationMethod.MinMax, {name: TensorData(lowest=np.float32(-bound), highest=np.float32(bound))
                                                  for name, bound in ranges.items()})


def test_mix_picks_per_tensor_the_range_that_keeps_it_closest(tmp_path):
    """`wide`'s max range was inflated by one outlier sample: the clipped range keeps its values
    closer. `uniform` fills its max range: clipping it costs more than the coarser grid."""
    rng = np.random.default_rng(0)
    wide = rng.normal(0, 1, 4000).astype(np.float32)
    uniform = rng.uniform(-3, 3, 4000).astype(np.float32)
    assert fake_quant_cosine(wide, 4.0) > fake_quant_cosine(wide, 400.0)
    assert fake_quant_cosine(uniform, 3.0) > fake_quant_cosine(uniform, 0.5)
    nodes = [helper.make_node("Add", [x, "zero"], [y], name=y) for x, y in (("a", "wide"), ("b", "uniform"))]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4000]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4000]) for n in ("wide", "uniform")],
        [helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    candidates = {"max": tensors_data({"wide": 400.0, "uniform": 3.0}),
                  "max_percentile": tensors_data({"wide": 4.0, "uniform": 0.5})}
    chosen, wins = mix_ranges(path, [{"a": wide, "b": uniform}], candidates)
    assert float(chosen["wide"].range_value[1]) == 4.0
    assert float(chosen["uniform"].range_value[1]) == 3.0
    assert wins == {"max": 1, "max_percentile": 1}


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    """A tiny X3 model with an outlier channel in encoders.1's FFN, its graphs, calibration and a dev
    list whose transcripts are the float model's own streaming hypotheses (PyTorch CER 0)."""
    root = tmp_path_factory.mktemp("fragile")
    rng = np.random.default_rng(1)
    wavs = []
    for i in range(8):
        wavs.append(root / f"utt{i}.wav")
        soundfile.write(wavs[-1], noise_bursts(rng, 6 + i), 16000)
    feats = [compute_fbank(read_audio(w)) for w in wavs]
    model_dir = root / "model"
    model = write_model_dir(model_dir, ARCH, feat_dim=80)
    (model_dir / "global_cmvn").write_text(json.dumps(condition_(model, feats, CHUNK, LEFT)))
    with_outlier_channel(model, 1, 3, OUTLIER)
    torch.save(model.state_dict(), model_dir / "final.pt")
    model, _, symbols = load_model(model_dir)
    id_to_token = tokens_of(symbols)
    lines = []
    for i, (wav, f) in enumerate(zip(wavs, feats)):
        hyp = detokenize(ctc_greedy_search(stream_encode(TorchBackend(model), f, CHUNK, LEFT)[1]), id_to_token)
        assert len(hyp) > 5, "the conditioned model should emit a token in most frames"
        lines.append(json.dumps({"key": f"utt{i}", "wav": str(wav), "txt": hyp}, ensure_ascii=False))
    (root / "dev.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    encoder, ctc = rewrite(model, CHUNK, LEFT)
    paths = export_bpu(model, encoder, ctc, root / "bpu")
    build_calibration(paths["encoder"], paths["ctc"], root / "dev.list", 4, 0, root / "cal")
    islands = resolve_run_on_cpu({n: read_placement(paths[n]) for n in paths}, [], True)
    configs = {}
    for name, path in paths.items():
        meta = read_metadata(path)
        dirs = [str(root / "cal" / name / n) for n in meta["input_name"].split(";")]
        configs[name] = build_config(name, str(path), meta, dirs, islands[name], "bernoulli2",
                                     {"compile_mode": "latency", "core_num": 1, "optimize_level": "O3", "debug": False})
    return root, model_dir, paths, configs


def study_inputs(fragile, tmp_path):
    """The fragile model's calibrated graphs, its dev scorer (PyTorch's reference written by the serial
    engine, as dev_reference writes it) and the MACs of every node."""
    root, model_dir, paths, configs = fragile
    method = CalibrationSettings("max", 1.0, False)
    graphs = {name: calibrate_graph(name, configs[name], method, root / "cal", tmp_path).graph for name in configs}
    reference = tmp_path / "dev_reference"
    reference.mkdir()
    model, _, symbols = load_model(model_dir)
    with Engine(ComputeSettings("local", 1, None, 16, None)) as engine:
        write_reference(engine, ShardCache(None, "test"), model_dir, 1, {DEV_SET: str(root / "dev.list")},
                        {"streaming": DecodeOptions(CHUNK, LEFT, modes=STUDY_MODES)}, symbols, 0, 1, reference)
    scorer = dev_scorer(reference, root / "dev.list", 0, paths["encoder"], paths["ctc"], 1)
    assert scorer.reference_cer == 0.0  # the transcripts are PyTorch's own hypotheses
    macs = {n: m for p in paths.values() for n, m in node_macs(onnx.load(str(p))).items()}
    return graphs, scorer, macs


def test_search_finds_the_outlier_channel_by_name_and_meets_the_budget(fragile, tmp_path):
    configs = fragile[3]
    graphs, scorer, macs = study_inputs(fragile, tmp_path)
    budget = 5.0
    study = int8_study(graphs, scorer, macs, budget, tmp_path)
    table = study["table"]
    assert table[0]["group"] == "encoders.1.feed_forward"  # the most sensitive group, by name
    assert table[0]["cer_delta"] > 2 * budget
    search = study["search"]
    assert search["trail"][0]["cer_delta"] > budget  # all INT8 breaks the budget...
    assert search["met"] and "encoders.1.feed_forward" in search["float_groups"]  # ...the culprit in float meets it
    assert search["result"]["cer_delta"] <= budget
    moved = search["float_nodes"]["encoder"]
    assert moved and all(node_group("encoder", n) in search["float_groups"] for n in moved)
    assert search["cost"]["nodes_moved_to_cpu"]["encoder"] == len(moved)
    assert 0 < search["cost"]["macs_moved_per_chunk"] < search["cost"]["bpu_macs_per_chunk"]
    # The same choice, as hb_mapper takes it: node names in run_on_cpu, after the islands.
    config = with_run_on_cpu(configs["encoder"], moved)
    assert run_on_cpu_list(config)[-len(moved):] == moved
    assert set(run_on_cpu_list(configs["encoder"])) <= set(run_on_cpu_list(config))


def test_the_sensitivity_table_on_two_workers_is_the_serial_one(fragile, tmp_path):
    """Each group's evaluation is independent: spread over 2 local Dask workers (which rebuild the
    scorer from bytes), every row is the serial row, number for number."""
    graphs, scorer, macs = study_inputs(fragile, tmp_path)
    one = sensitivity_table(SubsetEvaluator(graphs, scorer, tmp_path), macs)
    with Engine(ComputeSettings("local", 2, None, 16, None)) as engine:
        two = sensitivity_table(SubsetEvaluator(graphs, scorer, tmp_path), macs, engine)
        assert engine.client is not None  # it really ran on the workers
    assert one == two and len(one) > 3
