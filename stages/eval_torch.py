"""eval_torch: the PyTorch reference, decoded once: every test set streamed and at full context, every
decoding mode of `compare.*`, sharded over the compute engine (`compute`). Its hypotheses and CTC
log-probs (exp/eval_torch) are what every artifact evaluation compares with; metrics/torch.json is the
one PyTorch baseline. A model whose conv module is not causal gets a warning, in the log and in each
set's streaming metrics."""

import logging
from pathlib import Path

from edgeasr.cli import atomic_dir, run_stage, write_json
from edgeasr.evaluate.contexts import decode_contexts
from edgeasr.evaluate.engine import compute_engine
from edgeasr.evaluate.reference import write_reference
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
    caveat = streaming_caveat(model)
    if caveat:
        logging.getLogger("edgeasr.eval_torch").warning(caveat)
        for name in params.data.test_sets:
            metrics[name]["streaming"]["warning"] = caveat
    write_json(TORCH_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
