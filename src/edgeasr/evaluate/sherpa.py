"""Decode with sherpa-onnx's own C++ runtime (its own front end and streaming loop): our
compatibility check for sherpa/model.onnx, not a re-implementation of it.

The model is loaded with `OnlineRecognizer.from_wenet_ctc` exactly as documented. Its feature
extractor defaults differ from WeNet's front end (high_freq -400 Hz instead of Nyquist, snip_edges
false instead of true); with `wenet_frontend=True` the recognizer is rebuilt from its own config
with WeNet's settings, which is how a WeNet model should be run.
"""

from pathlib import Path

import numpy as np

from ..frontend import SAMPLE_RATE
from ..frontend.fbank import NUM_MEL_BINS, sherpa_feature_settings


class SherpaRecognizer:
    def __init__(self, model: Path, tokens: Path, chunk_size: int, num_left_chunks: int, threads: int = 1,
                 wenet_frontend: bool = True):
        import sherpa_onnx  # optional at import time of edgeasr; required by eval_onnx

        self.recognizer = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
            tokens=str(tokens),
            model=str(model),
            chunk_size=chunk_size,
            num_left_chunks=num_left_chunks,
            num_threads=threads,
            sample_rate=SAMPLE_RATE,
            feature_dim=NUM_MEL_BINS,
            decoding_method="greedy_search",
        )
        if wenet_frontend:
            config = self.recognizer.config
            config.feat_config = sherpa_onnx.FeatureExtractorConfig(**sherpa_feature_settings())
            self.recognizer.recognizer = type(self.recognizer.recognizer)(config)

    def transcribe(self, samples: np.ndarray) -> str:
        """(N,) float32 at 16 kHz -> text; 0.5 s of trailing silence flushes the last chunk."""
        stream = self.recognizer.create_stream()
        stream.accept_waveform(SAMPLE_RATE, samples)
        stream.accept_waveform(SAMPLE_RATE, np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
        stream.input_finished()
        while self.recognizer.is_ready(stream):
            self.recognizer.decode_stream(stream)
        return self.recognizer.get_result(stream)
