"""One policy for unusable utterances and a report of what a user should know about their data."""

import json
import logging

import numpy as np
import pytest
import soundfile

from edgeasr.errors import EdgeAsrError
from edgeasr.frontend.dataset import load_utterances

MIN_FRAMES = 15  # conv2d8: right context 14 + 1


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def write_list(folder, rows):
    lines = [json.dumps({"key": key, "wav": wav, "txt": txt}, ensure_ascii=False) for key, wav, txt in rows]
    path = folder / "data.list"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path):
    soundfile.write(tmp_path / "ok.wav", tone(1.0), 16000, subtype="PCM_16")
    soundfile.write(tmp_path / "8k.wav", tone(1.0, 8000), 8000, subtype="PCM_16")
    soundfile.write(tmp_path / "short.wav", tone(0.1), 16000, subtype="PCM_16")  # 8 frames < 15
    soundfile.write(tmp_path / "cut.wav", tone(1.0), 16000, subtype="PCM_16")
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])  # header still promises 1 s
    return tmp_path


def test_report_counts_and_warnings_name_the_utterances(corpus, caplog):
    rows = [("a", "ok.wav", "开灯"), ("b", "8k.wav", "关灯"), ("c", "short.wav", "灯"), ("d", "cut.wav", "开"),
            ("a", "ok.wav", "开灯吧")]
    symbols = {"<blank>": 0, "<unk>": 1, "开": 2, "关": 3, "灯": 4}
    with caplog.at_level(logging.WARNING):
        prepared = load_utterances(write_list(corpus, rows), 0, MIN_FRAMES, symbols)
    assert prepared.report == {"listed": 5, "used": 4, "skipped_too_short": 1, "resampled": 1, "truncated": 1,
                               "duplicate_keys": 1, "oov_reference_chars": 1}
    assert [p.utt.key for p in prepared.utterances] == ["a", "b", "d", "a"]
    text = caplog.text
    assert "1 utterances shorter than 15 feature frames, skipped (c)" in text
    assert "files at 8000 Hz, resampled to 16000 (b)" in text
    assert "truncated WAV files" in text and "(d)" in text
    assert "keys listed more than once (a)" in text
    assert "reference characters missing from units.txt ('吧')" in text


def test_unreadable_audio_stops_naming_list_line_and_file(corpus):
    (corpus / "bad.wav").write_bytes(b"not audio")
    path = write_list(corpus, [("a", "ok.wav", "开"), ("b", "bad.wav", "关")])
    with pytest.raises(EdgeAsrError, match=r"data\.list:2: .*bad\.wav: cannot read audio"):
        load_utterances(path, 0, MIN_FRAMES)


def test_a_list_with_nothing_long_enough_is_an_error(corpus):
    path = write_list(corpus, [("c", "short.wav", "灯")])
    with pytest.raises(EdgeAsrError, match="no utterance is long enough"):
        load_utterances(path, 0, MIN_FRAMES)


def test_an_intact_wav_is_not_reported_truncated(corpus):
    prepared = load_utterances(write_list(corpus, [("a", "ok.wav", "开")]), 0, MIN_FRAMES)
    assert prepared.report["truncated"] == 0 and prepared.report["resampled"] == 0
