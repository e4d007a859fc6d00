"""Transcribe a wav with sherpa-onnx's own runtime and edgeasr's sherpa/ export, and print the RTF.

    dvc repro export
    python examples/sherpa_transcribe.py exp/export/sherpa data/demo/wavs/test_00000.wav

sherpa-onnx does not read the chunk geometry from the model: `chunk_size` and `num_left_chunks`
must be passed to `from_wenet_ctc` and equal the exported ones (its defaults, 16 / 4, fail on every
decode with a cache-shape error). They are in the model's metadata, read here. WeNet's front end
needs `high_freq=0` (Nyquist) and `snip_edges=True`; sherpa-onnx's defaults differ, so the
recognizer is rebuilt with them (edgeasr.frontend.fbank.sherpa_feature_settings, the settings of
edgeasr's own front end, which edgeasr.evaluate.sherpa uses too).
"""

import sys
import time
from pathlib import Path

import onnx
import sherpa_onnx
import soundfile

from edgeasr.frontend.fbank import sherpa_feature_settings


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/sherpa_transcribe.py SHERPA_DIR WAV")
    model_dir, wav = Path(sys.argv[1]), Path(sys.argv[2])
    for path in (model_dir / "model.onnx", model_dir / "tokens.txt", wav):
        if not path.is_file():
            sys.exit(f"error: {path}: not found")
    meta = {p.key: p.value for p in onnx.load(str(model_dir / "model.onnx"), load_external_data=False).metadata_props}
    recognizer = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
        tokens=str(model_dir / "tokens.txt"),
        model=str(model_dir / "model.onnx"),
        chunk_size=int(meta["chunk_size"]),  # e.g. 8: the exported chunk, not sherpa-onnx's default 16
        num_left_chunks=int(meta["num_left_chunks"]),  # e.g. 16: not the default 4
        num_threads=1,
        sample_rate=16000,
        feature_dim=80,
    )
    config = recognizer.config
    # {'sampling_rate': 16000, 'feature_dim': 80, 'low_freq': 20.0, 'high_freq': 0.0, 'dither': 0.0, 'snip_edges': True}
    config.feat_config = sherpa_onnx.FeatureExtractorConfig(**sherpa_feature_settings())
    recognizer.recognizer = type(recognizer.recognizer)(config)

    samples, rate = soundfile.read(str(wav), dtype="float32")
    if rate != 16000 or samples.ndim != 1:
        sys.exit(f"error: {wav}: expected 16 kHz mono, got {rate} Hz, {samples.ndim} channel(s)")
    start = time.perf_counter()
    stream = recognizer.create_stream()
    stream.accept_waveform(rate, samples)
    stream.accept_waveform(rate, [0.0] * (rate // 2))  # trailing silence flushes the last chunk
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    elapsed = time.perf_counter() - start
    print(recognizer.get_result(stream))
    print(f"real-time factor {elapsed / (len(samples) / rate):.4f} ({elapsed * 1000:.1f} ms for "
          f"{len(samples) / rate:.2f} s of audio, 1 thread, front end included)")


if __name__ == "__main__":
    main()
