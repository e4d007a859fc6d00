"""The small interface every inference backend implements, and the PyTorch implementation.

A backend turns features into encoder frames (full utterance, or one chunk with its own cache
state), encoder frames into CTC log-probabilities, and rescores hypotheses with the attention
decoder. Arrays in and out are numpy float32, so onnxruntime backends plug in unchanged.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, List, Protocol, Sequence, Tuple

import numpy as np
import torch

from ..model.asr_model import IGNORE_ID, ASRModel, add_sos_eos, pad_list, reverse_pad_list
from ..model.subsampling import Geometry
from .search import Hyp, attention_rescoring, sequence_scores


class Backend(Protocol):
    """Encoder + CTC, whole utterance or chunk by chunk, and attention rescoring.

    CTC log-probabilities come with the encoder frames: CTC is per frame, so a chunk's log-probs
    are the utterance's log-probs for those frames."""

    geometry: Geometry
    has_decoder: bool

    def encode(self, feats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(T, F) -> encoder frames (T', D) and CTC log-probs (T', V), full context."""

    def start_stream(self, chunk_size: int, num_left_chunks: int) -> Any:
        """A fresh per-utterance state for `encode_chunk`."""

    def encode_chunk(self, window: np.ndarray, state: Any) -> Tuple[np.ndarray, np.ndarray, Any]:
        """(W, F) window of one chunk -> (chunk', D), (chunk', V) and the next state."""

    def pick_rescored(
        self, encoder_out: np.ndarray, beam: Sequence[Tuple[Hyp, float]], ctc_weight: float, reverse_weight: float
    ) -> Tuple[Hyp, float]:
        """Attention rescoring of a CTC n-best (hypothesis, CTC score): the best hypothesis and its score."""


class ScoringBackend(ABC):
    """For backends whose decoder returns per-hypothesis scores: rescoring is then shared Python."""

    @abstractmethod
    def rescore(self, encoder_out: np.ndarray, hyps: Sequence[Hyp], reverse_weight: float
                ) -> Tuple[np.ndarray, np.ndarray]:
        """(T', D) and N hypotheses -> (N,) left-to-right and (N,) right-to-left decoder scores
        (the right-to-left ones may be zeros where reverse_weight is 0: they are not used then)."""

    def pick_rescored(
        self, encoder_out: np.ndarray, beam: Sequence[Tuple[Hyp, float]], ctc_weight: float, reverse_weight: float
    ) -> Tuple[Hyp, float]:
        scores, r_scores = self.rescore(encoder_out, [h for h, _ in beam], reverse_weight)
        return attention_rescoring(beam, scores, r_scores, ctc_weight, reverse_weight)


@dataclass
class TorchStreamState:
    offset: int
    required_cache_size: int
    att_cache: torch.Tensor
    cnn_cache: torch.Tensor


class TorchBackend(ScoringBackend):
    """The reference: edgeasr's PyTorch model, eager, no grad."""

    def __init__(self, model: ASRModel):
        self.model = model.eval()
        embed = model.encoder.embed
        self.geometry = Geometry(embed.subsampling_rate, embed.right_context, model.encoder.input_size)
        self.has_decoder = model.decoder is not None
        self.sos, self.eos = model.sos, model.eos

    @torch.no_grad()
    def encode(self, feats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        xs = torch.from_numpy(feats).unsqueeze(0)
        out, _ = self.model.encoder(xs, torch.tensor([feats.shape[0]]), -1, -1)
        return out[0].numpy(), self.model.ctc.log_softmax(out)[0].numpy()

    def start_stream(self, chunk_size: int, num_left_chunks: int) -> TorchStreamState:
        return TorchStreamState(0, chunk_size * num_left_chunks, torch.zeros(0, 0, 0, 0), torch.zeros(0, 0, 0, 0))

    @torch.no_grad()
    def encode_chunk(self, window: np.ndarray, state: TorchStreamState) -> Tuple[np.ndarray, np.ndarray, TorchStreamState]:
        y, att_cache, cnn_cache = self.model.encoder.forward_chunk(
            torch.from_numpy(window).unsqueeze(0), state.offset, state.required_cache_size, state.att_cache, state.cnn_cache
        )
        next_state = TorchStreamState(state.offset + y.size(1), state.required_cache_size, att_cache, cnn_cache)
        return y[0].numpy(), self.model.ctc.log_softmax(y)[0].numpy(), next_state

    @torch.no_grad()
    def rescore(self, encoder_out: np.ndarray, hyps: Sequence[Hyp], reverse_weight: float
                ) -> Tuple[np.ndarray, np.ndarray]:
        n = len(hyps)
        hyps_pad = pad_list([torch.tensor(h, dtype=torch.long) for h in hyps], IGNORE_ID)
        hyps_lens = torch.tensor([len(h) for h in hyps], dtype=torch.long)
        ys_in, _ = add_sos_eos(hyps_pad, self.sos, self.eos, IGNORE_ID)
        r_ys_in, _ = add_sos_eos(reverse_pad_list(hyps_pad, hyps_lens, IGNORE_ID), self.sos, self.eos, IGNORE_ID)
        memory = torch.from_numpy(encoder_out).unsqueeze(0).repeat(n, 1, 1)
        memory_mask = torch.ones(n, 1, memory.size(1), dtype=torch.bool)
        out, r_out, _ = self.model.decoder(memory, memory_mask, ys_in, hyps_lens + 1, r_ys_in, reverse_weight)
        scores = sequence_scores(torch.log_softmax(out, -1).numpy(), hyps, self.eos)
        if reverse_weight > 0 and r_out.dim() == 3:  # only a bitransformer has a right decoder
            r_scores = sequence_scores(torch.log_softmax(r_out, -1).numpy(), hyps, self.eos, reverse=True)
        else:
            r_scores = np.zeros(n)
        return scores, r_scores


__all__: List[str] = ["Backend", "Geometry", "ScoringBackend", "TorchBackend", "TorchStreamState"]
