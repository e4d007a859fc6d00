"""CER with WeNet's `compute-wer.py --char=1` normalization, aligned by jiwer.

Tokenization (as WeNet's `characterize`): listed punctuation and spaces are dropped; a CJK
character (Unicode category Lo) is one token; any other run (ASCII words, digits, `<tag>`s) is one
token up to a space or a non-ASCII character. Then tokens are upper-cased, `<tags>` are stripped
and empty tokens dropped. jiwer aligns the token sequences and counts S/D/I.
"""

import unicodedata
from dataclasses import dataclass
from typing import Iterable, List, Tuple

import jiwer

PUNCTUATION = frozenset("!,?、。！，；？：「」︰『』《》")
SPACES = frozenset(" \t\r\n")


def characterize(text: str) -> List[str]:
    tokens, i = [], 0
    while i < len(text):
        char = text[i]
        category = unicodedata.category(char)
        if char in PUNCTUATION or char in SPACES or category in ("Zs", "Cn"):
            i += 1
            continue
        if category == "Lo":
            tokens.append(char)
            i += 1
            continue
        stop = ">" if char == "<" else " "
        j = i + 1
        while j < len(text) and ord(text[j]) < 128 and text[j] not in SPACES and text[j] != stop:
            j += 1
        if j < len(text) and text[j] == ">":
            j += 1
        tokens.append(text[i:j])
        i = j
    return tokens


def strip_tags(token: str) -> str:
    out, i = [], 0
    while i < len(token):
        if token[i] == "<":
            while i < len(token) and token[i] != ">":
                i += 1
            i += 1
        else:
            out.append(token[i])
            i += 1
    return "".join(out)


def normalize(text: str) -> List[str]:
    """Text -> the token list WeNet scores in char mode (case-insensitive, tags removed)."""
    return [t for t in (strip_tags(tok.upper()) for tok in characterize(text)) if t]


@dataclass
class ErrorCounts:
    reference_tokens: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    utterances: int = 0
    sentence_errors: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def cer(self) -> float:
        """Percent; insertions against an empty reference count against one token."""
        return 100.0 * self.errors / max(self.reference_tokens, 1)

    def as_dict(self) -> dict:
        return {
            "cer": round(self.cer, 4),
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "reference_tokens": self.reference_tokens,
            "utterances": self.utterances,
            "sentence_error_rate": round(100.0 * self.sentence_errors / max(self.utterances, 1), 4),
        }


def align_counts(reference: str, hypothesis: str) -> Tuple[int, int, int, int]:
    """(reference tokens, S, D, I) for one utterance after normalization."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0, 0, 0, len(hyp)
    if not hyp:
        return len(ref), 0, len(ref), 0
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return len(ref), out.substitutions, out.deletions, out.insertions


def score(pairs: Iterable[Tuple[str, str]]) -> ErrorCounts:
    """Aggregate counts over (reference, hypothesis) pairs."""
    counts = ErrorCounts()
    for reference, hypothesis in pairs:
        n, s, d, i = align_counts(reference, hypothesis)
        counts.reference_tokens += n
        counts.substitutions += s
        counts.deletions += d
        counts.insertions += i
        counts.utterances += 1
        counts.sentence_errors += int(s + d + i > 0)
    return counts
