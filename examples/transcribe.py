"""Transcribe a wav file with a WeNet model directory and print the real-time factor:

    python examples/transcribe.py models/demo data/demo/wavs/test_00000.wav
"""

import sys
import time

from edgeasr.decode import DecodeOptions, TorchBackend, recognize
from edgeasr.errors import EdgeAsrError
from edgeasr.frontend import SAMPLE_RATE, compute_fbank, read_audio
from edgeasr.frontend.tokens import detokenize, id_to_token
from edgeasr.model import load_model


def main(model_dir: str, wav: str) -> None:
    model, config, symbols = load_model(model_dir)
    samples = read_audio(wav)
    start = time.perf_counter()
    feats = compute_fbank(samples)  # (T, 80) Kaldi fbank, WeNet's settings
    opts = DecodeOptions(chunk_size=8, num_left_chunks=16, reverse_weight=0.3)  # streaming, 8-frame chunks
    hyps = recognize(TorchBackend(model), feats, opts).hyps
    elapsed = time.perf_counter() - start
    tokens = id_to_token(symbols)
    for mode, ids in hyps.items():
        print(f"{mode:20s} {detokenize(ids, tokens)}")
    print(f"real-time factor {elapsed / (len(samples) / SAMPLE_RATE):.4f} (all three modes, front end included)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/transcribe.py MODEL_DIR WAV")
    try:
        main(sys.argv[1], sys.argv[2])
    except EdgeAsrError as exc:
        sys.exit(f"error: {exc}")
