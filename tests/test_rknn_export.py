"""The RK3588's own graph: a static fixed-cache streaming export of every architecture edgeasr loads,
streamed by the host protocol against PyTorch, and its calibration list in rknn-toolkit2's format
(no toolkit needed: the graph runs on onnxruntime)."""

import json

import numpy as np
import onnx
import pytest
import torch

from conftest import ARCHITECTURES, make_model
from edgeasr.artifact.metadata import read_metadata
from edgeasr.bpu.calibration import select_utterances
from edgeasr.bpu.int8_groups import node_group
from edgeasr.decode import TorchBackend
from edgeasr.decode.fixed_cache_backend import MODEL_TYPE, FixedCacheBackend
from edgeasr.errors import EdgeAsrError
from edgeasr.export.parity import FLOAT_TOLERANCE, worst_diffs
from edgeasr.rknn.dataset import first_sample, write_dataset
from edgeasr.rknn.export import export_fixed_cache

CHUNK, LEFT = 4, 2


def utterances(n: int, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(61 + 53 * i, 20, generator=g) * 2 + 5).numpy() for i in range(n)]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_streams_like_pytorch_with_static_shapes(arch, tmp_path):
    """conformer rel_pos / no_pos, causal and non-causal conv, LayerNorm and BatchNorm, transformer
    abs_pos, MoE: the utterances are longer than the cache, so slots are dropped and positions move."""
    model = make_model(arch)
    graph = export_fixed_cache(model, CHUNK, LEFT, tmp_path / "encoder.onnx")
    diffs = worst_diffs(TorchBackend(model), FixedCacheBackend(graph), utterances(3), CHUNK, LEFT)
    assert all(diffs[k] <= FLOAT_TOLERANCE[k] for k in diffs), diffs
    proto = onnx.load(str(graph))
    for tensor in list(proto.graph.input) + list(proto.graph.output):
        dims = tensor.type.tensor_type.shape.dim
        assert all(d.dim_value > 0 for d in dims), f"{tensor.name} has a dynamic axis"
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, tensor.name
    assert not any(node.op_type == "Slice" and len(node.input) > 1 and node.input[1] in
                   {i.name for i in proto.graph.input} for node in proto.graph.node)
    groups = {node_group("encoder", node.name) for node in proto.graph.node}
    assert {"embed", "ctc", "encoders.0.self_attn"} <= groups  # readable layer groups for the toolkit's tables
    meta = read_metadata(graph, (MODEL_TYPE,))
    assert (int(meta["chunk_size"]), int(meta["left_chunks"])) == (CHUNK, LEFT)
    names = [i.name for i in proto.graph.input]
    conv = getattr(model.encoder.encoders[0], "conv_module", None)
    assert ("cnn_cache" in names) == (conv is not None and conv.lorder > 0)
    assert ("pos_emb" in names) == (ARCHITECTURES[arch]["encoder_conf"]["pos_enc_layer_type"] != "no_pos")


def test_a_mutated_position_feed_breaks_parity(tmp_path):
    """The parity above would fail if the host fed the keys' positions wrongly (here: unclamped by
    one chunk), so it checks the protocol, not just the graph."""
    model = make_model("conformer_relpos_conv2d_swish_ln")
    backend = FixedCacheBackend(export_fixed_cache(model, CHUNK, LEFT, tmp_path / "encoder.onnx"))
    right = backend.key_positions
    backend.key_positions = lambda done: right(done + 1)
    diffs = worst_diffs(TorchBackend(model), backend, utterances(1), CHUNK, LEFT)
    assert diffs["encoder_out"] > 10 * FLOAT_TOLERANCE["encoder_out"]  # what the export check rejects


def test_unlimited_left_context_is_refused_in_one_line(tmp_path):
    with pytest.raises(EdgeAsrError, match=r"num_decoding_left_chunks=-1: the RK3588 graph keeps a fixed cache"):
        export_fixed_cache(make_model("conformer_relpos_conv2d_swish_ln"), CHUNK, -1, tmp_path / "e.onnx")
    backend = FixedCacheBackend(export_fixed_cache(make_model("conformer_relpos_conv2d_swish_ln"), CHUNK, LEFT,
                                                   tmp_path / "encoder.onnx"))
    with pytest.raises(ValueError, match="exported for chunk 4 / left 2, asked for 8 / 2"):
        backend.start_stream(8, LEFT)


def test_calibration_list_holds_real_caches_in_graph_input_order(tmp_path, monkeypatch):
    """One line per chosen utterance, its inputs as .npy paths relative to the list in the graph's
    input order; the chosen chunk's caches are the ones streaming built (not zeros), and the
    utterances are the calibrate stage's choice for the same max_samples and seed."""
    import soundfile

    from conftest import noise_bursts
    rng = np.random.default_rng(0)
    lines = []
    for i in range(5):
        wav = tmp_path / f"u{i}.wav"
        soundfile.write(wav, noise_bursts(rng, 6 + i), 16000)
        lines.append(json.dumps({"key": f"u{i}", "wav": str(wav), "txt": "x"}))
    data_list = tmp_path / "cali.list"
    data_list.write_text("\n".join(lines) + "\n")
    model = make_model("conformer_relpos_conv2d_swish_ln", feat_dim=80)
    graph = export_fixed_cache(model, CHUNK, LEFT, tmp_path / "encoder.onnx")
    list_file, manifest = write_dataset(graph, "encoder", data_list, 3, 0, tmp_path / "dataset")
    assert [s.split(".")[0] for s in manifest["samples"]] == [f"u{i}" for i in select_utterances(5, 3, 0)]
    rows = list_file.read_text().splitlines()
    assert len(rows) == 3
    names = [i.name for i in onnx.load(str(graph)).graph.input]
    for row, sample in zip(rows, manifest["samples"]):
        paths = row.split()
        assert [p.split("/")[1] for p in paths] == names and all(not p.startswith("/") for p in paths)
        arrays = {name: np.load(list_file.parent / p) for name, p in zip(names, paths)}
        chunk_index = int(sample.split(".")[1])
        assert (arrays["att_mask"] == arrays["att_mask"][:, :1]).all()  # one row per query, all alike
        filled = np.count_nonzero(arrays["att_mask"][0, 0, : -CHUNK])
        assert filled == min(chunk_index * CHUNK, CHUNK * LEFT)  # the cache slots streaming filled
        assert (np.abs(arrays["att_cache"]).sum() > 0) == (chunk_index > 0)
    assert len(first_sample(list_file)) == len(names)
    again, _ = write_dataset(graph, "encoder", data_list, 3, 0, tmp_path / "again")
    assert again.read_text() == list_file.read_text()
