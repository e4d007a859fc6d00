"""Text <-> token ids under a units.txt symbol table (WeNet's): one token per character for Mandarin,
BPE pieces with the word marker '▁' otherwise."""

from typing import Dict, List, Mapping

WORD_MARKER = "\u2581"  # WeNet's / sentencepiece's start-of-word mark in BPE units


def tokenize(text: str, symbols: Mapping[str, int]) -> List[int]:
    """Character tokens of `text` (whitespace dropped); characters outside the table become <unk>."""
    unk = symbols["<unk>"]
    return [symbols.get(c, unk) for c in text if not c.isspace()]


def id_to_token(symbols: Mapping[str, int]) -> Dict[int, str]:
    """The symbol table inverted: token id -> token."""
    return {i: t for t, i in symbols.items()}


def detokenize(ids: List[int], tokens: Mapping[int, str]) -> str:
    """Token ids -> text; the BPE word marker becomes a space."""
    return "".join(tokens.get(i, "<unk>") for i in ids).replace(WORD_MARKER, " ").strip()
