"""Exported ONNX == torch for every family and architecture; MoE exports valid for any routing."""

import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
import pytest
import torch
import yaml

from conftest import condition_, make_model, noise_bursts
from edgeasr.decode import DecodeOptions, TorchBackend, recognize
from edgeasr.decode.onnx_backend import OnnxCpuBackend, OnnxGpuBackend, OnnxSherpaGraphBackend
from edgeasr.errors import EdgeAsrError
from edgeasr.frontend import SAMPLE_RATE, compute_fbank
from edgeasr.export.cpu import export_cpu
from edgeasr.export.gpu import export_gpu
from edgeasr.evaluate.pinned_ort import OrtServer, served_backend
from edgeasr.export.int8 import missing_ort_1_13_kernels
from edgeasr.artifact.metadata import read_metadata
from edgeasr.export.parity import FLOAT_TOLERANCE, check_within_tolerance, worst_diffs
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
            export_gpu(model, root / "gpu", CHUNK, LEFT, beam_size=10, ctc_weight=0.5, reverse_weight=0.3),
            export_sherpa(model, units, root / "sherpa", CHUNK, LEFT),
        )
    return out


def test_every_family_matches_torch(exported, arch):
    model, cpu, gpu, sherpa = exported[arch]
    ref = TorchBackend(model)
    utts = utterances(3)
    cpu_b = OnnxCpuBackend(cpu["encoder"], cpu["ctc"], cpu["decoder"])
    gpu_b = OnnxGpuBackend(gpu["offline_encoder"], gpu.get("streaming_encoder"), gpu.get("offline_decoder"))
    results = {
        "cpu": worst_diffs(ref, cpu_b, utts, CHUNK, LEFT),
        "gpu_offline": worst_diffs(ref, gpu_b, utts, -1, -1),
        "sherpa": worst_diffs(ref, OnnxSherpaGraphBackend(sherpa["model"]), utts, CHUNK, LEFT, ("ctc_log_probs",)),
    }
    contexts = [((CHUNK, LEFT), cpu_b), ((-1, -1), gpu_b)]
    if "streaming_encoder" in gpu:
        results["gpu_streaming"] = worst_diffs(ref, gpu_b, utts, CHUNK, LEFT)
        contexts.append(((CHUNK, LEFT), gpu_b))
    else:  # only the non-causal conformer: WeNet's Triton streaming template needs a conv cache
        assert set(gpu["skipped"]) == {"gpu_streaming"} and arch == "conformer_relpos_noncausal_k15"
    for name, diffs in results.items():
        check_within_tolerance(name, diffs)
        assert max(diffs.values()) < 1e-5, (name, diffs)  # far inside the stated tolerances
    for ctx, backend in contexts:
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


def test_int8_copies_have_only_kernels_onnxruntime_1_13_implements(exported, arch, tmp_path):
    """WeNet's runtime pins onnxruntime 1.13.1 / 1.14.0, whose CPU provider lacks ConvInteger with int8
    weights: the INT8 copies must not need it (and the check catches a graph that does)."""
    _, cpu, _, _ = exported[arch]
    for name in ("encoder", "ctc", "decoder"):
        assert missing_ort_1_13_kernels(cpu[f"{name}_int8"]) == [], name
        assert cpu[f"{name}_int8"].parent.name == "cpu_int8" and cpu[f"{name}_int8"].name == f"{name}.onnx"
    if any(n.op_type == "Conv" for n in onnx.load(str(cpu["encoder"])).graph.node):
        int8_weights = tmp_path / "encoder.qint8.onnx"
        quantize_dynamic(str(cpu["encoder"]), str(int8_weights), weight_type=QuantType.QInt8)
        assert any(m.startswith("ConvInteger") and "'int8'" in m for m in missing_ort_1_13_kernels(int8_weights))


def test_int8_copies_are_close_but_not_identical(exported):
    model, cpu, _, _ = exported["conformer_nopos_conv2d8_relu_causal_bn"]
    int8 = OnnxCpuBackend(cpu["encoder_int8"], cpu["ctc_int8"], cpu["decoder_int8"])
    ops = {n.op_type for n in onnx.load(str(cpu["encoder_int8"])).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops  # the weights really are 8-bit
    float_ops = {n.op_type for n in onnx.load(str(cpu["encoder"])).graph.node}
    assert not {"DynamicQuantizeLinear", "MatMulInteger"} & float_ops
    diffs = worst_diffs(TorchBackend(model), int8, utterances(2), CHUNK, LEFT)
    assert 1e-4 < diffs["ctc_log_probs"] < 0.5, diffs


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
    gpu_b = OnnxGpuBackend(gpu["offline_encoder"], gpu.get("streaming_encoder"), gpu.get("offline_decoder"))
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
        diffs = worst_diffs(ref, gpu_b, [x], -1, -1)
        assert diffs["encoder_out"] < FLOAT_TOLERANCE["encoder_out"] and diffs["ctc_log_probs"] < FLOAT_TOLERANCE["ctc_log_probs"]


def test_parity_failure_names_the_tensor():
    with pytest.raises(EdgeAsrError, match=r"cpu: ONNX differs from PyTorch \(ctc_log_probs max\|diff\| 0\.5"):
        check_within_tolerance("cpu", {"encoder_out": 1e-7, "ctc_log_probs": 0.5})


@pytest.mark.parametrize("arch", ["conformer_nopos_conv2d8_relu_causal_bn", "conformer_relpos_conv2d_swish_ln"])
def test_sherpa_onnx_runtime_decodes_exactly_like_our_streaming(tmp_path, arch):
    """sherpa-onnx's own C++ runtime (its front end, streaming loop and greedy search) loads our model
    unchanged and, with WeNet's fbank settings, writes exactly the hypothesis our streaming decoder
    gets from the same audio. The model is conditioned so that every clip yields a different, long
    token sequence (a raw random model emits one token for anything). The rel_pos model checks the
    positions: sherpa-onnx starts `offset` at chunk * left, WeNet's runtime at 0."""
    pytest.importorskip("sherpa_onnx")
    from edgeasr.evaluate.sherpa import SherpaRecognizer

    rng = np.random.default_rng(0)
    clips = [noise_bursts(rng, 10 + 2 * i) for i in range(3)]
    # NOTE: transcribe() appends 0.5 s of silence to flush sherpa's last chunk; our decoder gets the
    # same samples, so both see identical feature frames.
    padded = [np.concatenate([c, np.zeros(SAMPLE_RATE // 2, np.float32)]) for c in clips]
    feats = [compute_fbank(x) for x in padded]
    model = make_model(arch, feat_dim=80)
    condition_(model, feats, CHUNK, LEFT)
    units = tmp_path / "units.txt"
    units.write_text("<blank> 0\n" + "".join(f"t{i} {i}\n" for i in range(1, model.vocab_size)))
    export_sherpa(model, units, tmp_path / "sherpa", CHUNK, LEFT)
    recognizer = SherpaRecognizer(tmp_path / "sherpa" / "model.onnx", tmp_path / "sherpa" / "tokens.txt", CHUNK, LEFT)
    opts = DecodeOptions(CHUNK, LEFT, beam_size=1, ctc_weight=0.5, reverse_weight=0.0, modes=("ctc_greedy",))
    ours = ["".join(f"t{i}" for i in recognize(TorchBackend(model), f, opts).hyps["ctc_greedy"]) for f in feats]
    assert len(set(ours)) == len(ours) and min(len(h) for h in ours) >= 20  # distinct, long hypotheses
    assert [recognizer.transcribe(c) for c in clips] == ours


def test_sherpa_export_needs_a_blank_token(tmp_path):
    model = make_model("conformer_nopos_conv2d8_relu_causal_bn")
    units = tmp_path / "units.txt"
    units.write_text("".join(f"t{i} {i}\n" for i in range(model.vocab_size)))
    with pytest.raises(EdgeAsrError, match="<blank>"):
        export_sherpa(model, units, tmp_path / "sherpa", CHUNK, LEFT)


# --- What WeNet's runtimes read (runtime/core/decoder/onnx_asr_model.cc, runtime/gpu/model_repo*,
# --- runtime/gpu/scripts/convert.py), written down here as facts the exports must satisfy.

# onnx_asr_model.cc feeds encoder inputs by name and reads outputs by position (1: att cache, 2: cnn cache).
CPU_ENCODER_OUTPUTS = ["output", "r_att_cache", "r_cnn_cache"]
# runtime/gpu/model_repo/encoder/config_template.pbtxt
TRITON_OFFLINE_ENCODER = (["speech", "speech_lengths"],
                          ["encoder_out", "encoder_out_lens", "ctc_log_probs", "beam_log_probs", "beam_log_probs_idx"])
# model_repo_stateful/encoder/config_template.pbtxt (states offset, att_cache, cnn_cache, cache_mask);
# config_template2.pbtxt, chosen by convert.py when cnn_module_kernel_cache == 0, has no cnn_cache.
TRITON_STREAMING_ENCODER = (["chunk_xs", "chunk_lens", "offset", "att_cache", "cnn_cache", "cache_mask"],
                            ["log_probs", "log_probs_idx", "chunk_out", "chunk_out_lens", "r_offset", "r_att_cache",
                             "r_cnn_cache", "r_cache_mask"])
# model_repo/decoder/config_template.pbtxt (u2++), config_template2.pbtxt (no right-to-left decoder)
TRITON_DECODER = ["encoder_out", "encoder_out_lens", "hyps_pad_sos_eos", "hyps_lens_sos", "r_hyps_pad_sos_eos",
                  "ctc_score"]
# convert.py reads these from the onnx folder's config.yaml
TRITON_CONFIG_KEYS = {"beam_size", "fp16"}
TRITON_STREAMING_CONFIG_KEYS = {"decoding_chunk_size", "num_decoding_left_chunks", "subsampling_rate", "context",
                                "cnn_module_kernel_cache", "decoding_window"}


def io_names(path):
    proto = onnx.load(str(path))
    return [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]


def has_causal_conv(model) -> bool:
    conv = getattr(model.encoder.encoders[0], "conv_module", None)
    return conv is not None and conv.lorder > 0


def test_cpu_encoder_has_the_inputs_wenets_runtime_feeds(exported, arch):
    model, cpu, _, _ = exported[arch]
    inputs, outputs = io_names(cpu["encoder"])
    expected = ["chunk", "offset", "required_cache_size", "att_cache", "cnn_cache", "att_mask"]
    if not has_causal_conv(model):  # WeNet's exporter drops the unread cache (transformer, non-causal)
        expected.remove("cnn_cache")
    if model.encoder.embed.pos_enc.__class__.__name__ == "NoPositionalEncoding":  # and the unread offset
        expected.remove("offset")
    assert inputs == expected
    assert outputs == CPU_ENCODER_OUTPUTS
    assert io_names(cpu["decoder"]) == (["hyps", "hyps_lens", "encoder_out"], ["score", "r_score"])


def test_triton_repository_layout_and_declared_io(exported, arch):
    model, _, gpu, _ = exported[arch]
    offline = gpu["offline_encoder"].parent
    assert offline.name == "offline" and {p.name for p in offline.iterdir()} == {"encoder.onnx", "decoder.onnx",
                                                                                "config.yaml"}
    assert io_names(gpu["offline_encoder"]) == TRITON_OFFLINE_ENCODER
    decoder_inputs = [n for n in TRITON_DECODER
                      if n != "r_hyps_pad_sos_eos" or hasattr(model.decoder, "right_decoder")]
    assert io_names(gpu["offline_decoder"]) == (decoder_inputs, ["best_index"])
    config = yaml.safe_load((offline / "config.yaml").read_text())
    assert TRITON_CONFIG_KEYS <= set(config) and config["beam_size"] == 10
    if "streaming_encoder" not in gpu:
        return
    streaming = gpu["streaming_encoder"].parent
    inputs, outputs = TRITON_STREAMING_ENCODER
    if not has_causal_conv(model):
        inputs = [n for n in inputs if n != "cnn_cache"]
        outputs = [n for n in outputs if n != "r_cnn_cache"]
    assert io_names(gpu["streaming_encoder"]) == (inputs, outputs)
    config = yaml.safe_load((streaming / "config.yaml").read_text())
    assert TRITON_CONFIG_KEYS | TRITON_STREAMING_CONFIG_KEYS <= set(config)
    assert (config["decoding_chunk_size"], config["num_decoding_left_chunks"]) == (CHUNK, LEFT)
    assert config["cnn_module_kernel_cache"] == (model.encoder.encoders[0].conv_module.lorder
                                                 if has_causal_conv(model) else 0)
    assert config["decoding_window"] == (CHUNK - 1) * model.encoder.embed.subsampling_rate + \
        model.encoder.embed.right_context + 1


def test_streaming_chunk_out_lens_counts_frames_of_real_audio(exported):
    """A short last chunk: chunk_out_lens equals what PyTorch's forward makes of those frames alone
    (2 for 30 frames at conv2d8), not WeNet's 30 // 8 = 3 (one frame of zero padding)."""
    model, _, gpu, _ = exported["conformer_nopos_conv2d8_relu_causal_bn"]
    backend = OnnxGpuBackend(gpu["offline_encoder"], gpu["streaming_encoder"], None)
    state = backend.start_stream(CHUNK, LEFT)
    feats = utterances(1)[0][:30]
    out, _, _ = backend.encode_chunk(feats, state)
    with torch.no_grad():
        _, mask = model.encoder(torch.from_numpy(feats)[None], torch.tensor([30]), -1, -1)
    assert out.shape[0] == int(mask.sum()) == 2


def test_unlimited_left_context_exports_like_wenet_and_streams_exactly(tmp_path):
    model = make_model("conformer_relpos_conv2d_swish_ln")
    cpu = export_cpu(model, tmp_path / "cpu", CHUNK, -1)
    inputs, _ = io_names(cpu["encoder"])
    assert inputs == ["chunk", "offset", "att_cache", "cnn_cache"]  # the cache grows; no mask, no size
    diffs = worst_diffs(TorchBackend(model), OnnxCpuBackend(cpu["encoder"], cpu["ctc"], cpu["decoder"]),
                    utterances(2), CHUNK, -1)
    assert max(diffs.values()) < 1e-5
    gpu = export_gpu(model, tmp_path / "gpu", CHUNK, -1, 10, 0.5, 0.3)
    assert "streaming_encoder" not in gpu and "num_decoding_left_chunks=-1" in gpu["skipped"]["gpu_streaming"]


def test_ctc_only_model_gets_a_neutral_decoder(tmp_path):
    model = make_model("conformer_nopos_conv2d8_relu_causal_bn")
    model.decoder = None
    cpu = export_cpu(model, tmp_path / "cpu", CHUNK, LEFT)
    assert read_metadata(cpu["decoder"])["decoder"] == "none"
    session = ort.InferenceSession(str(cpu["decoder"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["hyps", "hyps_lens", "encoder_out"]
    score, r_score = session.run(None, {"hyps": np.full((3, 5), 4, np.int64), "hyps_lens": np.full(3, 5, np.int64),
                                        "encoder_out": np.ones((1, 9, 16), np.float32)})
    assert score.shape == (3, 5, model.vocab_size) and not score.any() and not r_score.any()
    assert not OnnxCpuBackend(cpu["encoder"], cpu["ctc"], cpu["decoder"]).has_decoder


@pytest.mark.parametrize("training", [False, True])
def test_exports_leave_the_callers_module_modes_alone(tmp_path, training):
    model = make_model("conformer_relpos_conv2d_swish_ln")
    model.train(training)
    units = tmp_path / "units.txt"
    units.write_text("<blank> 0\n" + "".join(f"t{i} {i}\n" for i in range(1, model.vocab_size)))
    export_cpu(model, tmp_path / "cpu", CHUNK, LEFT)
    export_gpu(model, tmp_path / "gpu", CHUNK, LEFT, 10, 0.5, 0.3)
    export_sherpa(model, units, tmp_path / "sherpa", CHUNK, LEFT)
    assert {m.training for m in model.modules()} == {training}


PINNED_PYTHON = os.environ.get("EDGEASR_ORT_PIN_PYTHON")  # e.g. a Python 3.10 venv with onnxruntime==1.13.1


@pytest.mark.parametrize("python", [sys.executable] + ([PINNED_PYTHON] if PINNED_PYTHON else []))
def test_a_served_runtime_decodes_the_int8_copies_like_this_one(exported, tmp_path, python):
    """`evaluate.pinned_ort`'s server, under this Python (the protocol) and, where
    $EDGEASR_ORT_PIN_PYTHON names one, under WeNet's pinned onnxruntime: every mode's hypotheses equal."""
    _, cpu, _, _ = exported["conformer_relpos_conv2d_swish_ln"]
    files = {name: cpu[f"{name}_int8"] for name in ("encoder", "ctc", "decoder")}
    local = OnnxCpuBackend(files["encoder"], files["ctc"], files["decoder"])
    opts = DecodeOptions(CHUNK, LEFT, modes=("ctc_greedy", "ctc_prefix_beam", "attention_rescoring"), beam_size=3)
    with OrtServer(Path(python), tmp_path / "server.log") as server:
        served = served_backend(server, files)
        for feats in utterances(2):
            here, there = recognize(local, feats, opts), recognize(served, feats, opts)
            assert here.hyps == there.hyps
            if python == sys.executable:
                np.testing.assert_array_equal(here.log_probs, there.log_probs)
            else:
                np.testing.assert_allclose(here.log_probs, there.log_probs, atol=1e-4)


def _batch(lengths, seed: int, feat: int = 20):
    g = torch.Generator().manual_seed(seed)
    speech = torch.zeros(len(lengths), max(lengths), feat)
    for i, n in enumerate(lengths):
        speech[i, :n] = torch.randn(n, feat, generator=g) * 4 + 5
    return speech, torch.tensor(lengths, dtype=torch.int32)


@pytest.mark.parametrize("form", ["sparse", "dense"])
def test_moe_forms_are_exact_for_every_shape(tmp_path, form):
    """Both export forms against PyTorch's routed forward (every token through its k experts only):
    batches of 1-3 with padding, one output frame, long inputs, and an input where an expert gets no
    frame at all; the gpu offline graph (batched) and the cpu streaming graph (chunks of every size)."""
    model = make_model("conformer_moe_conv2d8")
    gpu = export_gpu(model, tmp_path / "gpu", CHUNK, LEFT, beam_size=3, ctc_weight=0.5, reverse_weight=0.3, moe=form)
    cpu = export_cpu(model, tmp_path / "cpu", CHUNK, LEFT, moe=form)
    assert read_metadata(gpu["offline_encoder"])["moe_form"] == form == read_metadata(cpu["encoder"])["moe_form"]
    offline = ort.InferenceSession(str(gpu["offline_encoder"]), providers=["CPUExecutionProvider"])
    shapes = [[15], [16], [23], [40], [120], [301], [15, 40], [64, 23], [120, 15, 80], [31, 31, 31], [500, 17]]
    starved = None
    for seed in range(200):  # an input on which some expert of the first layer gets no frame
        speech, _ = _batch([31], 1000 + seed)
        if 0 in _routing_counts(model, speech[0].numpy()):
            starved = speech[0].numpy()
            break
    assert starved is not None
    cases = [_batch(lengths, seed) for seed, lengths in enumerate(shapes)]
    cases.append((torch.from_numpy(starved)[None], torch.tensor([31], dtype=torch.int32)))
    for speech, lens in cases:
        with torch.no_grad():
            ref, mask = model.encoder(speech, lens, -1, -1)  # routed: the MoE layers' own forward
        got = offline.run(None, {"speech": speech.numpy(), "speech_lengths": lens.numpy()})[0]
        valid = mask.squeeze(1).numpy()
        assert np.abs(got - ref.numpy())[valid].max() <= 1e-5, (lens.tolist(), form)
    streamed = worst_diffs(TorchBackend(model), OnnxCpuBackend(cpu["encoder"], cpu["ctc"], cpu["decoder"]),
                           [c[0][0, : int(c[1][0])].numpy() for c in cases], CHUNK, LEFT)
    assert streamed["encoder_out"] <= 1e-5 and streamed["ctc_log_probs"] <= 1e-5, streamed
