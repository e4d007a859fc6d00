"""CER normalization reproduces WeNet's compute-wer.py --char=1; jiwer aligns."""

import pytest

from edgeasr.evaluate.cer import normalize, score


@pytest.mark.parametrize(
    "text,tokens",
    [
        ("打开 客厅的灯", list("打开客厅的灯")),
        ("打开，客厅。的灯！", list("打开客厅的灯")),
        ("播放hello world的歌", ["播", "放", "HELLO", "WORLD", "的", "歌"]),
        ("<noise>打开<unk>灯", ["打", "开", "灯"]),
        ("Wi-Fi密码ABC123", ["WI-FI", "密", "码", "ABC123"]),
        ("  \t ", []),
    ],
)
def test_normalization_golden(text, tokens):
    assert normalize(text) == tokens


def test_counts():
    counts = score([("打开客厅的灯", "打开客厅灯灯啊"), ("关闭空调", "关闭空调"), ("", "多")])
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 2)
    assert counts.reference_tokens == 10
    assert counts.cer == pytest.approx(30.0)
    assert counts.sentence_errors == 2


def test_spaces_and_punctuation_do_not_count():
    assert score([("打开，客厅的灯", "打开 客厅的灯。")]).cer == 0.0
    assert score([("hello world", "HELLO  world")]).cer == 0.0
