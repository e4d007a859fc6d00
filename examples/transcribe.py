"""Transcribe a wav file with a WeNet model directory: python examples/transcribe.py MODEL_DIR WAV"""

import sys

from edgeasr.decode import DecodeOptions, TorchBackend, recognize
from edgeasr.frontend import compute_fbank, read_audio
from edgeasr.model import load_model

model, config, symbols = load_model(sys.argv[1])
feats = compute_fbank(read_audio(sys.argv[2]))  # (T, 80) Kaldi fbank, WeNet's settings
opts = DecodeOptions(chunk_size=8, num_left_chunks=16, reverse_weight=0.3)  # streaming, 8-frame chunks
hyps = recognize(TorchBackend(model, reverse_weight=0.3), feats, opts).hyps
id_to_token = {i: t for t, i in symbols.items()}
for mode, ids in hyps.items():
    print(f"{mode:20s} {''.join(id_to_token[i] for i in ids)}")
