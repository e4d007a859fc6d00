"""Decode with sherpa-onnx's own C++ runtime (its own front end and streaming loop): our
compatibility check for sherpa/model.onnx, not a re-implementation of it."""

from pathlib import Path

import numpy as np

from ..frontend import SAMPLE_RATE


class SherpaRecognizer:
    def __init__(self, model_dir: Path, chunk_size: int, left_chunks: int, threads: int = 1):
        import sherpa_onnx  # optional at import time of edgeasr; required by eval_onnx

        self.recognizer = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
            tokens=str(model_dir / "tokens.txt"),
            model=str(model_dir / "model.onnx"),
            chunk_size=chunk_size,
            num_left_chunks=left_chunks,
            num_threads=threads,
            sample_rate=SAMPLE_RATE,
            feature_dim=80,
            decoding_method="greedy_search",
        )

    def transcribe(self, samples: np.ndarray) -> str:
        """(N,) float32 at 16 kHz -> text; 0.5 s of trailing silence flushes the last chunk."""
        stream = self.recognizer.create_stream()
        stream.accept_waveform(SAMPLE_RATE, samples)
        stream.accept_waveform(SAMPLE_RATE, np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
        stream.input_finished()
        while self.recognizer.is_ready(stream):
            self.recognizer.decode_stream(stream)
        return self.recognizer.get_result(stream)
