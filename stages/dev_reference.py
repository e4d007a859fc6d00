"""dev_reference: the PyTorch reference on the development split that compile's INT8 sensitivity study
scores (the first `bpu.sensitivity_utts` utterances of data.dev_list, streamed, CTC greedy), decoded
once over the compute engine; with `bpu.sensitivity_utts=0` (no study) or without the X3 chosen, a note."""

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


def main(argv: list) -> None:
    params = load_stage_params("dev_reference", argv)
    note = off_note("dev_reference", params.npu)
    if note:
        write_off_outputs(note, [DEV_REFERENCE])
        return
    check_streaming(params.streaming)
    with atomic_dir(DEV_REFERENCE) as out:
        if params.data.dev_list is None or params.bpu.sensitivity_utts == 0:
            (out / "README.txt").write_text(f"data.dev_list={params.data.dev_list}, bpu.sensitivity_utts="
                                            f"{params.bpu.sensitivity_utts}: no INT8 sensitivity study, no dev reference\n")
            return
        model, _, symbols = load_model(params.model.dir)
        opts = DecodeOptions(params.streaming.chunk_size, params.streaming.num_decoding_left_chunks, modes=STUDY_MODES)
        with compute_engine() as (engine, cache):
            write_reference(engine, cache, Path(params.model.dir), min_input_frames(model.encoder.embed.right_context),
                            {DEV_SET: params.data.dev_list}, {"streaming": opts}, symbols, params.bpu.sensitivity_utts,
                            1, out)


if __name__ == "__main__":
    run_stage(main)
