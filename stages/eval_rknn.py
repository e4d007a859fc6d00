"""eval_rknn: with npu=rk3588, the compiled RK3588 models streamed in rknn-toolkit2's simulator over the
test sets; CER vs PyTorch (`compare.*`), cosine vs the float graphs, simulator seconds (not the chip's)."""

from pathlib import Path

import torch

from edgeasr.cli import fresh_dir, run_stage, write_json
from edgeasr.decode import TorchBackend
from edgeasr.decode.bpu_backend import OnnxBpuBackend
from edgeasr.evaluate.compare import decode_reference, evaluate_family
from edgeasr.evaluate.quant import stream_cosine
from edgeasr.evaluate.contexts import decode_contexts
from edgeasr.frontend.dataset import load_utterances
from edgeasr.frontend.tokens import id_to_token
from edgeasr.model import load_model
from edgeasr.model.subsampling import min_input_frames
from edgeasr.params import load_stage_params, to_dict
from edgeasr.paths import BPU, RKNN, RKNN_METRICS, RKNN_SIMULATION
from edgeasr.rknn.compile import TARGET, off_note
from edgeasr.rknn.simulate import simulator_backend, simulator_job
from edgeasr.rknn.toolkit import Simulator, find_python

CTC_MODES = ("ctc_greedy", "ctc_prefix_beam")  # CTC graphs only, as on the X3


def main(argv: list) -> None:
    params = load_stage_params("eval_rknn", argv)
    npu = to_dict(params.npu)
    note = off_note(npu)
    if note:
        (fresh_dir(RKNN_SIMULATION) / "README.txt").write_text(note + "\n")
        write_json(RKNN_METRICS, {"target": npu["name"], "note": note})
        return
    torch.set_num_threads(params.compare.threads)
    model, _, symbols = load_model(params.model.dir)
    tokens = id_to_token(symbols)
    opts = decode_contexts(params.compare, params.streaming, CTC_MODES, full_context=False)["streaming"]
    float_graphs = OnnxBpuBackend(BPU / "encoder.onnx", BPU / "ctc.onnx", "exact", params.compare.threads)
    pytorch = TorchBackend(model)
    logs = fresh_dir(RKNN_SIMULATION)
    with Simulator(find_python(npu["toolkit_python"]), simulator_job(npu, BPU, RKNN), logs / "job.json",
                   logs / "simulator.log") as simulator:
        simulated = simulator_backend(simulator, BPU)
        metrics = {"target": TARGET, "simulated": "rknn-toolkit2's x86 simulator, models rebuilt from exp/rknn's inputs"}
        for name, data_list in params.data.test_sets.items():
            prepared = load_utterances(Path(data_list), params.compare.max_utts,
                               min_input_frames(model.encoder.embed.right_context)).utterances
            reference = decode_reference(pytorch, prepared, {"streaming": opts}, tokens)
            result = evaluate_family(simulated, prepared, opts, "streaming", tokens, reference, "rk3588_int8")
            # NOTE: the x86 simulator's speed says nothing about the chip's: never reported as an RTF.
            result["simulator_time"] = {"seconds_per_audio_second": result.pop("rtf"),
                                        "ms_per_chunk": result.pop("chunk_compute_ms")}
            result.update(stream_cosine(float_graphs, simulated, prepared, opts))
            metrics[name] = result
    write_json(RKNN_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
