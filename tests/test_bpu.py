"""The X3 rewrite: contract, per-module and streamed parity, static export, op placement, board protocol."""

import numpy as np
import onnx
import pytest
import torch

from conftest import make_model, variant
from edgeasr.bpu import check_contract, contract_violations, export_bpu, placement_report, rewrite, placement_summary
from edgeasr.bpu.encoder import check_encoder_parity
from edgeasr.bpu.layers import Pointwise, from_4d, to_4d
from edgeasr.bpu.placement import place_node
from edgeasr.bpu.run_on_cpu import nodes_matching
from edgeasr.decode import TorchBackend
from edgeasr.decode.bpu_backend import OnnxBpuBackend
from edgeasr.errors import EdgeAsrError
from edgeasr.artifact.metadata import read_metadata
from edgeasr.export.parity import worst_diffs

CHUNK, LEFT = 4, 2


def bpu_arch(base: str, **encoder_conf) -> str:
    """A variant of a conftest architecture, no_pos unless given (conftest.variant)."""
    return variant(base, **{"pos_enc_layer_type": "no_pos", **encoder_conf})


# Inside the contract, and more than WeNet's exporter takes (which is only the first one).
BPU_ARCHS = {
    "wenet_x3": bpu_arch("conformer_nopos_conv2d8_relu_causal_bn"),
    "conv2d_swish_relselfattn_lnconv": bpu_arch("conformer_relpos_conv2d_swish_ln"),
    "transformer_conv2d6": bpu_arch("transformer_abspos_conv2d6"),
    "moe_gelu": bpu_arch("conformer_moe_conv2d8"),
    "postnorm_no_macaron": bpu_arch("conformer_nopos_conv2d8_relu_causal_bn", normalize_before=False,
                                    macaron_style=False),
}


def utterances(n: int, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(97 + 37 * i, 20, generator=g) * 2 + 5).numpy() for i in range(n)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = {}
    for key, arch in BPU_ARCHS.items():
        model = make_model(arch)
        encoder, ctc = rewrite(model, CHUNK, LEFT)
        out[key] = model, export_bpu(model, encoder, ctc, tmp_path_factory.mktemp(key))
    return out


@pytest.mark.parametrize("key", sorted(BPU_ARCHS))
@pytest.mark.parametrize("layer_norm_on_bpu", [False, True])
def test_rewrite_matches_forward_chunk(key, layer_norm_on_bpu):
    """Each module is checked as it is built (<= 1e-5); three chunks through the whole encoder too."""
    model = make_model(BPU_ARCHS[key])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    encoder, _ = rewrite(model, CHUNK, LEFT, layer_norm_on_bpu)
    assert check_encoder_parity(model, encoder, chunks=5) < 1e-5
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the source model was modified"


@pytest.mark.parametrize("key", sorted(BPU_ARCHS))
def test_exported_graphs_stream_like_torch(exported, key):
    """Whole utterances, caches partly then fully filled, padded last chunk: ONNX == PyTorch streaming."""
    model, paths = exported[key]
    backend = OnnxBpuBackend(paths["encoder"], paths["ctc"], "exact")
    diffs = worst_diffs(TorchBackend(model), backend, utterances(3), CHUNK, LEFT)
    assert diffs["encoder_out"] < 1e-5 and diffs["ctc_log_probs"] < 1e-5, diffs  # stage tolerance: 1e-4


@pytest.mark.parametrize("key", sorted(BPU_ARCHS))
def test_export_is_static_opset11_with_metadata(exported, key):
    model, paths = exported[key]
    proto = onnx.load(str(paths["encoder"]))
    assert proto.ir_version <= 7
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [11]
    enc = model.encoder
    h, d, layers = enc.attention_heads, enc.output_size(), len(enc.encoders)
    window = (CHUNK - 1) * enc.embed.subsampling_rate + enc.embed.right_context + 1
    shapes = {i.name: [x.dim_value for x in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    expected = {"chunk": [1, 1, window, 20], "att_cache": [1, layers * h, 2 * d // h, CHUNK * LEFT],
                "att_mask": [1, h, CHUNK, CHUNK * (LEFT + 1)]}
    conv = getattr(enc.encoders[0], "conv_module", None)
    expected["cnn_cache"] = [1, d, layers, conv.lorder if conv is not None else 1]  # 1: the placeholder
    assert shapes == expected
    meta = read_metadata(paths["encoder"])
    assert meta["input_name"].split(";") == list(shapes)
    assert meta["input_shape"].split(";") == ["x".join(map(str, s)) for s in shapes.values()]
    assert meta["chunk_size"] == str(CHUNK) and meta["left_chunks"] == str(LEFT) and meta["opset"] == "11"
    ctc_inputs = [[x.dim_value for x in i.type.tensor_type.shape.dim] for i in onnx.load(str(paths["ctc"])).graph.input]
    assert ctc_inputs == [[1, d, 1, CHUNK]]
    # Node names tell the layer and sublayer.
    names = [n.name for n in proto.graph.node]
    assert any(n.startswith("/encoders.1/self_attn/linear_q/") for n in names)


def test_contract_lists_every_violation():
    model = make_model("conformer_relpos_conv2d_swish_ln")  # rel_pos
    model.encoder.encoders[0].conv_module.lorder = 0  # as a non-causal module would be
    found = {v.key for v in contract_violations(model, 0, -1)}
    assert found == {"streaming.chunk_size", "streaming.num_decoding_left_chunks",
                     "encoder_conf.pos_enc_layer_type", "encoder_conf.causal"}
    with pytest.raises(EdgeAsrError, match="pos_enc_layer_type='rel_pos'.*causal"):
        check_contract(model, CHUNK, LEFT)
    assert contract_violations(make_model(BPU_ARCHS["wenet_x3"]), CHUNK, LEFT) == []


def test_wide_layers_split_at_2048_channels():
    """A 2500 -> 4100 Linear becomes a 2 x 3 grid of 1x1 convs, each within the X3 channel limit."""
    linear = torch.nn.Linear(2500, 4100)
    pointwise = Pointwise.of(linear)  # checked against the Linear as it is built
    assert len(pointwise.convs) == 6
    assert all(c.in_channels <= 2048 and c.out_channels <= 2048 for c in pointwise.convs)
    x = torch.randn(1, 3, 2500)
    with torch.no_grad():
        assert torch.allclose(from_4d(pointwise(to_4d(x))), linear(x), atol=1e-4)


def test_placement_of_the_x3_demo_architecture(exported):
    report = placement_report(exported["wenet_x3"][1]["encoder"])
    summary = placement_summary(report)
    assert summary["cpu_unexpected"] == 0, summary["unexpected_nodes"]
    assert all(p.device == "BPU" for p in report if p.op == "Conv")
    islands = [p for p in report if p.run_on_cpu]
    assert {p.op for p in islands} >= {"Add", "Sub", "Mul"}  # LayerNorm's elementwise ops stay float
    assert all("/norm" in p.node or "/after_norm/" in p.node or "/self_attn/" in p.node for p in islands)
    on_bpu = {p.node for p in report if p.device == "BPU"}
    assert all(n in on_bpu for n in nodes_matching(report, "Conv", r"/(linear_\w|w_[12]|pointwise_conv\d)/"))
    assert all(p.device == "CPU" and p.expected for p in report if p.op == "Softmax")
    assert nodes_matching(report, "Conv", r"^/embed/conv/conv\.0/") == ["/embed/conv/conv.0/Conv"]
    ctc = placement_summary(placement_report(exported["wenet_x3"][1]["ctc"]))
    assert ctc["cpu"] == 0


def test_placement_flags_gelu_and_oversized_convs(exported):
    moe = placement_summary(placement_report(exported["moe_gelu"][1]["encoder"]))
    assert moe["cpu_unexpected"] > 0 and all("activation" in n for n in moe["unexpected_nodes"])
    weights = {"w9": [8, 8, 1, 9], "wide": [4100, 4100, 1, 1], "ok": [16, 16, 1, 7]}
    shapes = {"x": [1, 8, 1, 20], "y": [1, 4100, 1, 20]}
    for weight, source, limit in (("w9", "x", "kernel 1x9"), ("wide", "y", "channels 4100 -> 4100")):
        node = onnx.helper.make_node("Conv", [source, weight], ["out"], name=f"/big/{weight}")
        placed = place_node(node, shapes, weights)
        assert placed.device == "CPU" and limit in placed.reason and placed.expected is False
    fine = place_node(onnx.helper.make_node("Conv", ["x", "ok"], ["out"], name="/ok"), shapes, weights)
    assert fine.device == "BPU"


def test_board_protocol_pads_and_opens_the_cache_chunk_by_chunk(exported):
    model, paths = exported["wenet_x3"]
    exact = OnnxBpuBackend(paths["encoder"], paths["ctc"], "exact")
    board = OnnxBpuBackend(paths["encoder"], paths["ctc"], "board")
    state = exact.start_stream(CHUNK, LEFT)
    first = exact.att_mask(0, CHUNK)[0, 0, 0]
    assert first.tolist() == [0.0] * CHUNK * LEFT + [1.0] * CHUNK
    assert exact.att_mask(1, CHUNK)[0, 0, 0].tolist() == [0.0] * CHUNK + [1.0] * 2 * CHUNK
    assert exact.att_mask(5, 2)[0, 0, 0].tolist() == [1.0] * (CHUNK * LEFT + 2) + [0.0] * (CHUNK - 2)
    short = np.random.default_rng(0).normal(5, 2, (exact.geometry.right_context + 1 + 8, 20)).astype(np.float32)
    frames, log_probs, state = exact.encode_chunk(short, state)
    assert frames.shape[0] == log_probs.shape[0] == 2 and state.chunks_done == 1
    frames, log_probs, _ = board.encode_chunk(short, board.start_stream(CHUNK, LEFT))
    assert frames.shape[0] == log_probs.shape[0] == CHUNK  # padding decoded, as WeNet's runtime does
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("key", sorted(BPU_ARCHS))
def test_encoder_io_is_what_the_board_runtime_indexes(exported, key):
    """WeNet's bpu_asr_model.cc reads encoder inputs 0-3 and outputs 0-2 by position, and fills the
    mask and copies the caches in NCHW order: every architecture the contract admits (a transformer
    too, with its placeholder cnn_cache) has exactly that I/O and says NCHW to hb_mapper."""
    _, paths = exported[key]
    proto = onnx.load(str(paths["encoder"]))
    assert [i.name for i in proto.graph.input] == ["chunk", "att_cache", "cnn_cache", "att_mask"]
    assert [o.name for o in proto.graph.output] == ["output", "r_att_cache", "r_cnn_cache"]
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert outs["r_att_cache"] == shapes["att_cache"] and outs["r_cnn_cache"] == shapes["cnn_cache"]
    for path in paths.values():
        meta = read_metadata(path)
        n = len(meta["input_name"].split(";"))
        assert meta["input_layout_rt"] == meta["input_layout_train"] == ";".join(["NCHW"] * n)


def test_a_graph_for_another_runtime_is_refused_by_its_model_type(exported):
    from edgeasr.decode.onnx_backend import OnnxCpuBackend

    _, paths = exported["wenet_x3"]
    with pytest.raises(EdgeAsrError, match=r"model_type 'wenet_x3_bpu', expected wenet_cpu or wenet_ctc"):
        OnnxCpuBackend(paths["encoder"], paths["ctc"], None)
