"""Front end: fbank against a from-the-definition Kaldi reference, audio reading, data lists."""

import numpy as np
import pytest
import soundfile

from edgeasr.errors import EdgeAsrError
from edgeasr.frontend import compute_fbank, read_audio, read_data_list, read_symbol_table
from edgeasr.frontend.tokens import detokenize, id_to_token, tokenize


def kaldi_fbank_reference(x: np.ndarray, bins: int = 80, rate: int = 16000) -> np.ndarray:
    """Kaldi's fbank written out: snip_edges framing, DC removal, preemphasis 0.97, povey window,
    512-point power spectrum, triangular mel filters (20 Hz..Nyquist), log with FLT_EPSILON floor."""
    x = x.astype(np.float64) * 32768.0
    length, shift, nfft = 400, 160, 512
    n = 1 + (len(x) - length) // shift
    frames = np.stack([x[i * shift : i * shift + length] for i in range(n)])
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames[:, 1:] = frames[:, 1:] - 0.97 * frames[:, :-1]
    frames[:, 0] = frames[:, 0] - 0.97 * frames[:, 0]
    frames = frames * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / (length - 1))) ** 0.85
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(rate / 2)
    delta = (hi - lo) / (bins + 1)
    freqs = mel(np.arange(nfft // 2) * rate / nfft)
    fb = np.zeros((bins, nfft // 2 + 1))
    for b in range(bins):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up = (freqs - left) / (center - left)
        down = (right - freqs) / (right - center)
        fb[b, : nfft // 2] = np.clip(np.minimum(up, down), 0.0, None) * ((freqs > left) & (freqs < right))
    return np.log(np.maximum(power @ fb.T, np.finfo(np.float32).eps)).astype(np.float32)


def test_fbank_matches_kaldi_definition():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    ours = compute_fbank(x.astype(np.float32))
    ref = kaldi_fbank_reference(x.astype(np.float32))
    assert ours.shape == ref.shape == (1 + (16000 - 400) // 160, 80)
    assert np.abs(ours - ref).max() < 2e-3  # float32 FFT vs float64 reference


def test_fbank_is_deterministic_without_dither():
    x = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1
    np.testing.assert_array_equal(compute_fbank(x), compute_fbank(x))


def test_resampling_keeps_frequency_and_duration(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)], axis=1)
    soundfile.write(tmp_path / "a.wav", stereo, rate)
    x = read_audio(tmp_path / "a.wav")
    assert abs(len(x) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 16000 / len(x) - 1000) < 2  # channel 0 only


def test_bad_audio_names_the_file(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(EdgeAsrError, match="junk.wav: cannot read audio"):
        read_audio(tmp_path / "junk.wav")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(EdgeAsrError, match="empty.wav: audio is empty"):
        read_audio(tmp_path / "empty.wav")


def test_data_list_errors_name_file_and_line(tmp_path):
    path = tmp_path / "data.list"
    path.write_text('{"key": "a", "wav": "a.wav", "txt": "x"}\n{"key": "b", "wav": "b.wav"}\n')
    with pytest.raises(EdgeAsrError, match=r"data.list:2: each line needs 'key', 'wav' and 'txt'"):
        read_data_list(path)
    path.write_text('{"key": "a", "wav": "a.wav", "txt": "x"}\n{not json\n')
    with pytest.raises(EdgeAsrError, match=r"data.list:2: not valid JSON"):
        read_data_list(path)
    path.write_text('{"key": "a", "wav": "sub/a.wav", "txt": "x"}\n')
    assert read_data_list(path)[0].wav == str(tmp_path / "sub" / "a.wav")


def test_symbol_table(tmp_path):
    path = tmp_path / "units.txt"
    path.write_text("<blank> 0\n<unk> 1\n好 2\n")
    assert read_symbol_table(path) == {"<blank>": 0, "<unk>": 1, "好": 2}
    path.write_text("<blank> 0\n<unk> 3\n")
    with pytest.raises(EdgeAsrError, match="ids are not 0..1"):
        read_symbol_table(path)
    path.write_text("<blank> 0\nbad line here\n")
    with pytest.raises(EdgeAsrError, match=r"units.txt:2: expected '<token> <id>'"):
        read_symbol_table(path)


def test_tokens_round_trip_with_unknown_characters_and_bpe_word_marks():
    symbols = {"<blank>": 0, "<unk>": 1, "打": 2, "开": 3, "\u2581he": 4, "llo": 5, "\u2581wor": 6, "ld": 7}
    assert tokenize("打 开灯", symbols) == [2, 3, 1]  # spaces dropped, 灯 unknown
    tokens = id_to_token(symbols)
    assert detokenize([2, 3, 1], tokens) == "打开<unk>"
    assert detokenize([4, 5, 6, 7], tokens) == "hello world"
    assert detokenize([99], tokens) == "<unk>"


def test_atomic_dir_leaves_nothing_behind_on_failure(tmp_path):
    from edgeasr.cli import atomic_dir

    out = tmp_path / "exp" / "bpu"
    with atomic_dir(out) as partial:
        (partial / "encoder.onnx").write_text("v1")
    assert (out / "encoder.onnx").read_text() == "v1"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out) as partial:
            (partial / "encoder.onnx").write_text("half")
            raise KeyboardInterrupt  # Ctrl-C in the middle of a stage
    assert not out.exists() and not (tmp_path / "exp" / "bpu.partial").exists()
