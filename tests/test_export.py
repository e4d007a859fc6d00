"""Exported ONNX == torch for every family and architecture; MoE exports valid for any routing."""

import numpy as np
import onnx
import pytest
import torch

from conftest import make_model
from edgeasr.decode import DecodeOptions, TorchBackend, recognize
from edgeasr.decode.onnx_backend import OnnxCpuBackend, OnnxGpuBackend, OnnxSherpaGraphBackend
from edgeasr.errors import EdgeAsrError
from edgeasr.export.cpu import export_cpu
from edgeasr.export.gpu import export_gpu
from edgeasr.export.metadata import read_metadata
from edgeasr.export.parity import ENCODER_TOL, LOG_PROB_TOL, compare, require
from edgeasr.export.sherpa import export_sherpa

CHUNK, LEFT = 4, 2


def utterances(n: int, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(120 + 41 * i, 20, generator=g) * 2 + 5).numpy() for i in range(n)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every architecture exported once for the module."""
    from conftest import ARCHITECTURES

    out = {}
    for arch in sorted(ARCHITECTURES):
        model = make_model(arch)
        root = tmp_path_factory.mktemp(arch)
        units = root / "units.txt"
        units.write_text("<blank> 0\n" + "".join(f"t{i} {i}\n" for i in range(1, model.vocab_size)))
        out[arch] = (
            model,
            export_cpu(model, root / "cpu", CHUNK, LEFT),
            export_gpu(model, root / "gpu", CHUNK, LEFT, beam_size=10),
            export_sherpa(model, units, root / "sherpa", CHUNK, LEFT),
        )
    return out


def test_every_family_matches_torch(exported, arch):
    model, cpu, gpu, sherpa = exported[arch]
    ref = TorchBackend(model, reverse_weight=0.3)
    utts = utterances(3)
    cpu_b = OnnxCpuBackend(cpu["encoder"], cpu["ctc"], cpu.get("decoder"))
    gpu_b = OnnxGpuBackend(gpu["encoder"], gpu["encoder_streaming"], gpu.get("decoder"))
    results = {
        "cpu": compare(ref, cpu_b, utts, CHUNK, LEFT),
        "gpu_streaming": compare(ref, gpu_b, utts, CHUNK, LEFT),
        "gpu_offline": compare(ref, gpu_b, utts, -1, -1),
        "sherpa": compare(ref, OnnxSherpaGraphBackend(sherpa["model"]), utts, CHUNK, LEFT, ("ctc_log_probs",)),
    }
    for name, diffs in results.items():
        require(name, diffs)
        assert max(diffs.values()) < 1e-5, (name, diffs)  # far inside the stated tolerances
    for ctx, backend in (((CHUNK, LEFT), cpu_b), ((CHUNK, LEFT), gpu_b), ((-1, -1), gpu_b)):
        opts = DecodeOptions(*ctx, beam_size=5, ctc_weight=0.5, reverse_weight=0.3)
        for x in utts:
            assert recognize(backend, x, opts).hyps == recognize(ref, x, opts).hyps


def test_metadata_opset_and_node_names(exported):
    model, cpu, gpu, sherpa = exported["conformer_relpos_conv2d_swish_ln"]
    meta = read_metadata(cpu["encoder"])
    for key in ("chunk_size", "left_chunks", "subsampling_rate", "right_context", "head", "num_blocks",
                "output_size", "cnn_module_kernel", "vocab_size", "sos_symbol", "eos_symbol", "opset",
                "model_type", "decoding_window", "is_bidirectional_decoder"):
        assert key in meta, key
    assert (meta["chunk_size"], meta["left_chunks"], meta["subsampling_rate"]) == ("4", "2", "4")
    sherpa_meta = read_metadata(sherpa["model"])
    assert sherpa_meta["model_type"] == "wenet_ctc" and sherpa_meta["subsampling_factor"] == "4"
    proto = onnx.load(str(cpu["encoder"]))
    assert proto.opset_import[0].version == 13
    names = [n.name for n in proto.graph.node]
    assert any(n.startswith("/encoders.1/self_attn/") for n in names)
    assert any("/conv_module/depthwise_conv/" in n for n in names)


def test_int8_copies_are_close_but_not_identical(exported):
    model, cpu, _, _ = exported["conformer_nopos_conv2d8_relu_causal_bn"]
    int8 = OnnxCpuBackend(cpu["encoder_int8"], cpu["ctc_int8"], cpu.get("decoder_int8"))
    diffs = compare(TorchBackend(model), int8, utterances(2), CHUNK, LEFT)
    assert 0 < diffs["ctc_log_probs"] < 1.0


def _routing_counts(model, feats: np.ndarray) -> list:
    """Tokens per expert in the first MoE layer for this utterance (full context)."""
    layer = model.encoder.encoders[0].feed_forward
    seen = {}

    def hook(module, inputs, output):
        x = inputs[0].reshape(-1, inputs[0].size(-1))
        selected = torch.topk(module.gate(x), module.n_expert_activated).indices
        seen["counts"] = torch.bincount(selected.flatten(), minlength=module.n_expert).tolist()

    handle = layer.register_forward_hook(hook)
    with torch.no_grad():
        model.encoder(torch.from_numpy(feats)[None], torch.tensor([feats.shape[0]]), -1, -1)
    handle.remove()
    return seen["counts"]


def test_moe_export_valid_for_starved_experts_and_new_shapes(exported):
    """The legacy tracer bakes routing shapes; the dense export must not. Find inputs where an expert
    gets zero tokens and exactly one token (lengths unlike the export example) and compare."""
    model, _, gpu, _ = exported["conformer_moe_conv2d8"]
    ref = TorchBackend(model)
    gpu_b = OnnxGpuBackend(gpu["encoder"], gpu["encoder_streaming"], gpu.get("decoder"))
    g = torch.Generator().manual_seed(11)
    found = {0: None, 1: None}
    for _ in range(400):
        n = int(torch.randint(15, 40, (1,), generator=g))  # 1..3 frames after conv2d8
        x = (torch.randn(n, 20, generator=g) * 4 + 5).numpy()
        counts = _routing_counts(model, x)
        for wanted in found:
            if found[wanted] is None and wanted in counts:
                found[wanted] = x
        if all(v is not None for v in found.values()):
            break
    assert all(v is not None for v in found.values()), found
    for x in found.values():
        diffs = compare(ref, gpu_b, [x], -1, -1)
        assert diffs["encoder_out"] < ENCODER_TOL and diffs["ctc_log_probs"] < LOG_PROB_TOL


def test_parity_failure_names_the_tensor():
    with pytest.raises(EdgeAsrError, match=r"cpu: ONNX differs from PyTorch \(ctc_log_probs max\|diff\| 0\.5"):
        require("cpu", {"encoder_out": 1e-7, "ctc_log_probs": 0.5})


def test_sherpa_onnx_runtime_loads_and_decodes(tmp_path):
    """sherpa-onnx's own C++ runtime loads our model unchanged and decodes audio (it computes 80-dim fbank)."""
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    model = make_model("conformer_nopos_conv2d8_relu_causal_bn", feat_dim=80)
    units = tmp_path / "units.txt"
    units.write_text("<blank> 0\n" + "".join(f"t{i} {i}\n" for i in range(1, model.vocab_size)))
    sherpa = export_sherpa(model, units, tmp_path / "sherpa", CHUNK, LEFT)
    recognizer = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
        tokens=str(sherpa["tokens"]), model=str(sherpa["model"]), chunk_size=CHUNK, num_left_chunks=LEFT, num_threads=1
    )
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, (np.random.default_rng(0).standard_normal(32000) * 0.1).astype(np.float32))
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    assert isinstance(recognizer.get_result(stream), str)


def test_sherpa_export_needs_a_blank_token(tmp_path):
    model = make_model("conformer_nopos_conv2d8_relu_causal_bn")
    units = tmp_path / "units.txt"
    units.write_text("".join(f"t{i} {i}\n" for i in range(model.vocab_size)))
    with pytest.raises(EdgeAsrError, match="<blank>"):
        export_sherpa(model, units, tmp_path / "sherpa", CHUNK, LEFT)
