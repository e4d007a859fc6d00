"""When CTC greedy emits each token, and how much later streaming emits it than full context.

A model whose full-context CTC follows the audio emits a token streamed at most about a chunk later
than at full context (it has to wait for the chunk's end). A model that learned at full context to
emit tokens ahead of their audio (full attention lets any frame emit any token of the utterance;
docs/training.md measured it on the U2++ demo) is delayed by several chunks, and streamed it has to
guess the tokens it used to emit early: its streaming CER is far above its full-context CER.
"""

from typing import Iterable, List, Optional, Tuple

import numpy as np

BLANK = 0  # the CTC blank id: load_model refuses a units.txt whose id 0 is not <blank>


def greedy_emissions(log_probs: np.ndarray) -> List[Tuple[int, int]]:
    """(token, frame) of each token CTC greedy emits from (T', V) log-probs: the first frame of each
    run of a non-blank argmax."""
    best = np.asarray(log_probs).argmax(axis=-1)
    return [(int(token), frame) for frame, token in enumerate(best)
            if token != BLANK and (frame == 0 or best[frame - 1] != token)]


def emission_delays(streamed: Iterable[np.ndarray], full: Iterable[np.ndarray]) -> List[int]:
    """Per token, streamed emission frame minus full-context emission frame, over the utterances
    (paired in order) whose greedy token sequences are the same in both."""
    delays: List[int] = []
    for a, b in zip(streamed, full):
        ea, eb = greedy_emissions(a), greedy_emissions(b)
        if [t for t, _ in ea] == [t for t, _ in eb]:
            delays += [fa - fb for (_, fa), (_, fb) in zip(ea, eb)]
    return delays


def median_delay_ms(streamed: Iterable[np.ndarray], full: Optional[Iterable[np.ndarray]],
                    frame_ms: float) -> Optional[float]:
    """Median emission delay in ms (None without a full-context decode or a comparable token)."""
    delays = emission_delays(streamed, full) if full is not None else []
    return round(float(np.median(delays)) * frame_ms, 1) if delays else None


def alignment_caveat(delay_ms: Optional[float], chunk_audio_ms: int) -> Optional[str]:
    """A warning when streaming emits a median of more than one chunk later than full context."""
    if delay_ms is None or delay_ms <= chunk_audio_ms:
        return None
    return (f"streamed, tokens come out a median {delay_ms:.0f} ms later than at full context (one chunk is "
            f"{chunk_audio_ms} ms): at full context the model emits ahead of the audio, and streamed it has to guess "
            f"those tokens; expect streaming CER well above full context (docs/training.md)")
