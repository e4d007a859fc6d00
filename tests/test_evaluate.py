"""Scoring an artifact against the PyTorch reference (written to disk and read back, as the stages do)
with stand-in backends, and the benchmark's FLOP count, timing loop and table."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import make_model
from edgeasr.bench import Row, graph_flops, table, time_backend
from edgeasr.artifact.manifest import CTC_MODES, Artifact
from edgeasr.decode import DecodeOptions, TorchBackend
from edgeasr.errors import EdgeAsrError
from edgeasr.evaluate.artifacts import score_backend
from edgeasr.evaluate.reference import decode_reference_set, read_reference, write_info
from edgeasr.frontend.datalist import Utterance
from edgeasr.frontend.dataset import PreparedUtterance
from edgeasr.frontend.fbank import FRAME_SHIFT_MS

ARCH = "conformer_nopos_conv2d8_relu_causal_bn"
OPTS = DecodeOptions(4, 2, beam_size=3, modes=("ctc_greedy", "ctc_prefix_beam"))


class Shifted(TorchBackend):
    """The PyTorch model with every CTC log-prob shifted by `shift`: the greedy path is unchanged (a
    prefix beam over unnormalized scores is not, so only greedy is compared)."""

    def __init__(self, model, shift: float):
        super().__init__(model)
        self.shift = shift

    def encode_chunk(self, window, state):
        out, log_probs, state = super().encode_chunk(window, state)
        return out, log_probs + self.shift, state


class Silent(TorchBackend):
    """A backend that hears nothing: blank wins every frame."""

    def encode_chunk(self, window, state):
        out, log_probs, state = super().encode_chunk(window, state)
        log_probs = np.full_like(log_probs, -30.0)
        log_probs[:, 0] = 0.0
        return out, log_probs, state


def artifact(frames_align: bool = True) -> Artifact:
    return Artifact("onnx_cpu", {}, "streaming", CTC_MODES, frames_align, "a stand-in")


def reference_of(backend, prepared, id_to_token, folder):
    folder.mkdir(parents=True, exist_ok=True)
    metrics = decode_reference_set(backend, "test", prepared, {"streaming": OPTS}, id_to_token, folder)
    write_info(folder, 1, {"streaming": OPTS}, {"test": {"keys": [p.utt.key for p in prepared]}},
               {t: i for i, t in id_to_token.items()})
    return metrics, read_reference(folder, "test")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = make_model(ARCH, feat_dim=20)
    rng = np.random.default_rng(0)
    id_to_token = {i: chr(0x4E00 + i) for i in range(model.vocab_size)}
    reference_backend = TorchBackend(model)
    prepared = []
    for i in range(4):
        feats = (rng.standard_normal((80 + 24 * i, 20)) * 2 + 5).astype(np.float32)
        prepared.append(PreparedUtterance(Utterance(f"u{i}", f"u{i}.wav", ""), feats, 1.0, 0.0))
    # Transcripts: what PyTorch decodes, so its CER is 0 and every difference is the artifact's.
    _, first = reference_of(reference_backend, prepared, id_to_token, tmp_path_factory.mktemp("first"))
    prepared = [PreparedUtterance(Utterance(p.utt.key, p.utt.wav, h["streaming"]["ctc_greedy"]),
                                  p.feats, p.seconds, p.feature_seconds) for p, h in zip(prepared, first.hyps)]
    assert all(p.utt.txt for p in prepared), "the random model decodes nothing: change the seed"
    metrics, reference = reference_of(reference_backend, prepared, id_to_token, tmp_path_factory.mktemp("ref"))
    return model, prepared, id_to_token, reference, metrics


def test_same_hypotheses_score_zero_delta_and_report_the_log_prob_gap(setup):
    model, prepared, id_to_token, reference, metrics = setup
    assert metrics["streaming"]["ctc_greedy"]["cer"] == 0.0 == reference.cer("streaming", "ctc_greedy")
    result, hyps = score_backend(artifact(), TorchBackend(model), prepared, OPTS, id_to_token, reference, "same")
    for mode in OPTS.modes:
        assert result[mode]["cer_delta"] == 0.0 and result[mode]["identical"] == 1.0
    assert result["max_abs_log_prob_diff"] == 0.0
    assert [h["ctc_greedy"] for h in hyps] == [p.utt.txt for p in prepared]
    greedy = DecodeOptions(4, 2, beam_size=3, modes=("ctc_greedy",))
    result, _ = score_backend(artifact(), Shifted(model, 0.25), prepared, greedy, id_to_token, reference, "shifted")
    assert result["ctc_greedy"] == {"cer": 0.0, "cer_delta": 0.0, "identical": 1.0}
    assert result["max_abs_log_prob_diff"] == pytest.approx(0.25, rel=1e-3)
    assert result["chunk_audio_ms"] == 4 * 8 * 10 and result["rtf"] > 0


def test_an_artifact_that_decodes_nothing_costs_every_character(setup):
    model, prepared, id_to_token, reference, _ = setup
    result, _ = score_backend(artifact(frames_align=False), Silent(model), prepared, OPTS, id_to_token, reference,
                              "silent")
    assert result["ctc_greedy"] == {"cer": 100.0, "cer_delta": 100.0, "identical": 0.0}
    assert "max_abs_log_prob_diff" not in result


def test_an_artifact_decoded_unlike_the_reference_is_refused(setup):
    """Another chunk than the reference's would give a CER − PyTorch of two different decodings."""
    model, prepared, id_to_token, reference, _ = setup
    with pytest.raises(EdgeAsrError, match="chunk_size=8 \\(reference: 4\\)"):
        score_backend(artifact(), TorchBackend(model), prepared, DecodeOptions(8, 2, beam_size=3, modes=CTC_MODES),
                      id_to_token, reference, "other chunk")
    with pytest.raises(EdgeAsrError, match="other utterances"):
        reference.check_utterances([p.utt.key for p in prepared[:2]])


def test_graph_flops_count_conv_and_matmul_macs(tmp_path):
    """Conv 3->8, 3x3 kernel on a 1x3x10x10 input (pads 1): 8*10*10 outputs x 27 MACs; MatMul
    (10x16)@(16x4): 40 outputs x 16 MACs. FLOPs = 2 x MACs; the Relu counts nothing."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], np.zeros(216, np.float32))
    matrix = helper.make_tensor("m", TensorProto.FLOAT, [16, 4], np.zeros(64, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("MatMul", ["y", "m"], ["z"], name="matmul")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 10]),
              helper.make_tensor_value_info("y", TensorProto.FLOAT, [10, 16])],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 8, 10, 10]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [10, 4])], [weight, matrix])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    assert graph_flops(path) == 2 * (8 * 10 * 10 * 27 + 40 * 16)


def test_benchmark_times_every_chunk_of_every_utterance(setup):
    model, prepared, _, _, _ = setup
    feats = [p.feats for p in prepared]
    seconds, chunks = time_backend(TorchBackend(model), feats, OPTS.chunk_size, OPTS.num_left_chunks)
    rate = model.encoder.embed.subsampling_rate
    frames = [(f.shape[0] - model.encoder.embed.right_context - 1) // rate + 1 for f in feats]
    assert chunks == sum(-(-t // OPTS.chunk_size) for t in frames) and seconds > 0


def test_benchmark_table_relates_each_row_to_the_bound():
    result = {"model": "m", "parameters_m": 1.0, "chunk": 8, "left": 16, "utterances": 2, "audio_s": 5.0,
              "gflops_per_audio_s": 0.5, "gemm_gflops": 100.0, "rtf_bound": 0.005,
              "rows": [Row("a", 0.02, 12.5, 3.6), Row("b", float("nan"), None, 0.0, "not built")]}
    lines = table(result).splitlines()
    assert lines[1] == "physical bound: 0.5 GFLOP per second of audio / 100.0 GFLOP/s GEMM = RTF 0.00500"
    assert lines[4] == "| a | 0.02000 | 12.50 | 4.0 | 3.6 |  |"
    assert lines[5] == "| b | nan | — | nan | 0.0 | not built |"


def one_hot_log_probs(best: list, vocab: int = 5) -> np.ndarray:
    """(T', V) log-probs whose argmax per frame is `best`."""
    out = np.full((len(best), vocab), -10.0, dtype=np.float32)
    out[np.arange(len(best)), best] = 0.0
    return out


def test_emission_delay_pairs_tokens_of_utterances_decoded_alike():
    from edgeasr.evaluate.emission import alignment_caveat, emission_delays, greedy_emissions, median_delay_ms

    full = one_hot_log_probs([3, 3, 0, 4, 0, 0, 4])
    late = one_hot_log_probs([0, 0, 3, 0, 0, 4, 0, 4])
    assert greedy_emissions(full) == [(3, 0), (4, 3), (4, 6)]
    assert emission_delays([late], [full]) == [2, 2, 1]
    other = one_hot_log_probs([2, 0, 0])  # another token sequence: not comparable, left out
    assert emission_delays([late, other], [full, full]) == [2, 2, 1]
    assert median_delay_ms([late, other], [full, full], 40.0) == 80.0
    assert median_delay_ms([other], [full], 40.0) is None and median_delay_ms([late], None, 40.0) is None
    assert alignment_caveat(None, 320) is None and alignment_caveat(320.0, 320) is None
    assert "1160 ms later" in alignment_caveat(1160.0, 320)


def test_cer_by_chunk_counts_errors_and_a_whole_utterance_chunk_is_full_context(setup):
    """The references are what the model decodes at chunk 4 / 2 left, so that row scores 0; a chunk
    longer than every utterance (full history) decodes exactly as full context."""
    from edgeasr.evaluate.by_chunk import chunk_rows, decode_by_chunk, format_table

    model, prepared, id_to_token, _, _ = setup
    frame_ms = TorchBackend(model).geometry.subsampling_rate * FRAME_SHIFT_MS
    rows = chunk_rows(*decode_by_chunk(TorchBackend(model), prepared, [4, 64, -1], 2, id_to_token), [4, 64, -1], frame_ms)
    by_chunk = {r["chunk"]: r for r in rows}
    assert by_chunk[4]["cer"] == 0.0 and by_chunk[4]["chunk_ms"] == 4 * 8 * 10
    assert by_chunk[64]["cer"] == by_chunk["full"]["cer"] and by_chunk["full"]["chunk_ms"] is None
    assert by_chunk[64]["delay_ms"] == by_chunk["full"]["delay_ms"] == 0.0
    assert len(format_table(rows).splitlines()) == 1 + len(rows)
    silent = chunk_rows(*decode_by_chunk(Silent(model), prepared, [4], 2, id_to_token), [4], frame_ms)[0]  # all deleted
    assert (silent["cer"], silent["sub"], silent["del"], silent["ins"]) == (100.0, 0.0, 100.0, 0.0)


def test_errors_by_position_counts_each_emitted_token_at_its_frame_inside_the_chunk():
    """Chunk 5, reference [2, 3, 4, 5]: the hypothesis 2 3 9 5 7 substitutes 9 for 4 (emitted at frame
    6, position 1) and appends 7 (frame 9, position 4); a repeated argmax counts once, at its first frame."""
    from edgeasr.evaluate.by_chunk import errors_by_position, format_positions, hypothesis_labels

    streamed = one_hot_log_probs([2, 2, 0, 3, 0, 0, 9, 0, 5, 7], vocab=10)
    rows = errors_by_position([streamed], [[2, 3, 4, 5]], chunk=5)
    assert [(r["emitted"], r["substitutions"], r["insertions"]) for r in rows] == [
        (1, 0, 0), (1, 1, 0), (0, 0, 0), (2, 0, 0), (1, 0, 1)]
    assert [r["error_pct"] for r in rows] == [0.0, 100.0, None, 0.0, 100.0]
    assert hypothesis_labels([2, 3, 4, 5], [2, 3, 9, 5, 7]) == ["correct", "correct", "substitution", "correct", "insertion"]
    assert hypothesis_labels([], [4]) == ["insertion"] and hypothesis_labels([4], []) == []
    assert [r["wrong_in_first_chunk"] for r in rows] == [0, 0, 0, 0, 0]  # both errors after frame 4
    in_chunk_8 = errors_by_position([streamed], [[2, 3, 4, 5]], chunk=8)  # the substitution (frame 6) is in the first
    assert [r["wrong_in_first_chunk"] for r in in_chunk_8] == [0, 0, 0, 0, 0, 0, 1, 0]
    assert in_chunk_8[1]["insertions"] == 1  # frame 9: second chunk
    table = format_positions(rows, None, 40.0).splitlines()
    assert len(table) == 1 + 5 + 1 and table[-1] == "wrong tokens: 2, of them in an utterance's first chunk: 0"
    beside = format_positions(rows, rows, 40.0).splitlines()
    assert "full" in beside[0] and beside[2].split()[-2:] == ["1", "100.0"] and beside[3].split()[-1] == "-"
