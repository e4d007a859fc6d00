"""eval_torch: the PyTorch reference, decoded once: every test set streamed and at full context, every
decoding mode of `compare.*`, sharded over the compute engine (`compute`). Its hypotheses and CTC
log-probs (exp/eval_torch) are what every artifact evaluation compares with; metrics/torch.json is the
one PyTorch baseline. Each set's streaming metrics also hold `emission_delay_ms`, the median of how
much later streaming emits a token than full context (evaluate.emission). A model whose conv module
is not causal, or whose tokens come out more than a chunk later streamed, gets a warning, in the log
and in that set's streaming metrics."""

import logging
from pathlib import Path
from typing import Optional

from edgeasr.cli import atomic_dir, run_stage, write_json
from edgeasr.evaluate.contexts import decode_contexts
from edgeasr.evaluate.emission import alignment_caveat, median_delay_ms
from edgeasr.evaluate.engine import compute_engine
from edgeasr.evaluate.reference import ReferenceSet, read_reference, write_reference
from edgeasr.frontend.fbank import FRAME_SHIFT_MS
from edgeasr.model import load_model
from edgeasr.model.convolution import streaming_caveat
from edgeasr.model.subsampling import min_input_frames
from edgeasr.params import load_stage_params
from edgeasr.paths import EVAL_TORCH, TORCH_METRICS


def main(argv: list) -> None:
    params = load_stage_params("eval_torch", argv)
    model, _, symbols = load_model(params.model.dir)
    min_frames = min_input_frames(model.encoder.embed.right_context)
    with atomic_dir(EVAL_TORCH) as out, compute_engine() as (engine, cache):
        metrics = write_reference(engine, cache, Path(params.model.dir), min_frames, dict(params.data.test_sets),
                                  decode_contexts(params.compare, params.streaming), symbols, params.compare.max_utts,
                                  params.compare.threads, out)
    frame_ms = model.encoder.embed.subsampling_rate * FRAME_SHIFT_MS
    for name in params.data.test_sets:
        streaming = metrics[name]["streaming"]
        streaming["emission_delay_ms"] = emission_delay_ms(read_reference(EVAL_TORCH, name), frame_ms)
        caveats = [c for c in (streaming_caveat(model),
                               alignment_caveat(streaming["emission_delay_ms"], streaming["chunk_audio_ms"])) if c]
        if caveats:
            streaming["warning"] = "; ".join(caveats)
            logging.getLogger("edgeasr.eval_torch").warning("%s: %s", name, streaming["warning"])
    write_json(TORCH_METRICS, metrics)


def emission_delay_ms(reference: ReferenceSet, frame_ms: float) -> Optional[float]:
    """The set's median emission delay, streaming against full context, from the reference's log-probs."""
    streamed, full = reference.log_probs("streaming"), reference.log_probs("full")
    count = len(reference.keys)
    return median_delay_ms((streamed(i) for i in range(count)), (full(i) for i in range(count)), frame_ms)


if __name__ == "__main__":
    run_stage(main)
