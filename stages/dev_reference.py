"""dev_reference: the PyTorch reference on the development split the INT8 studies score (streamed, CTC
greedy), decoded once over the compute engine: the X3's sensitivity study (compile, the first
`bpu.sensitivity_utts` utterances of data.dev_list) and the RK3588's budget search (compile_rknn, the
first `rknn.sensitivity_utts`, with rknn.max_cer_delta set); the larger count of the targets chosen is
decoded and each study takes its first utterances. With neither study on, or neither target chosen, a note."""

from pathlib import Path

from edgeasr.cli import atomic_dir, run_stage, write_off_outputs
from edgeasr.decode import DecodeOptions
from edgeasr.evaluate.engine import compute_engine
from edgeasr.evaluate.reference import write_reference
from edgeasr.evaluate.sensitivity import DEV_SET, STUDY_MODES
from edgeasr.model import load_model
from edgeasr.model.subsampling import min_input_frames
from edgeasr.params import check_streaming, load_stage_params
from edgeasr.paths import DEV_REFERENCE
from edgeasr.targets import off_note


def dev_utterances(params) -> int:
    """How many dev utterances the chosen targets' studies score: the X3's sensitivity study whenever
    it is chosen, the RK3588's budget search when it has a budget."""
    counts = [params.bpu.sensitivity_utts if params.npu.x3 else 0,
              params.rknn.sensitivity_utts if params.npu.rk3588 and params.rknn.max_cer_delta is not None else 0]
    return max(counts)


def main(argv: list) -> None:
    params = load_stage_params("dev_reference", argv)
    note = off_note("dev_reference", params.npu)
    if note:
        write_off_outputs(note, [DEV_REFERENCE])
        return
    check_streaming(params.streaming)
    utts = dev_utterances(params)
    with atomic_dir(DEV_REFERENCE) as out:
        if params.data.dev_list is None or utts == 0:
            (out / "README.txt").write_text(f"data.dev_list={params.data.dev_list}, bpu.sensitivity_utts="
                                            f"{params.bpu.sensitivity_utts}, rknn.sensitivity_utts="
                                            f"{params.rknn.sensitivity_utts} (rknn.max_cer_delta="
                                            f"{params.rknn.max_cer_delta}): no INT8 study, no dev reference\n")
            return
        model, _, symbols = load_model(params.model.dir)
        opts = DecodeOptions(params.streaming.chunk_size, params.streaming.num_decoding_left_chunks, modes=STUDY_MODES)
        with compute_engine() as (engine, cache):
            write_reference(engine, cache, Path(params.model.dir), min_input_frames(model.encoder.embed.right_context),
                            {DEV_SET: params.data.dev_list}, {"streaming": opts}, symbols, utts,
                            1, out)


if __name__ == "__main__":
    run_stage(main)
