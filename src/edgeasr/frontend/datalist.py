"""WeNet raw data lists (one JSON object per line: key, wav, txt) and units.txt symbol tables."""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List

from ..errors import EdgeAsrError


@dataclass(frozen=True)
class Utterance:
    key: str
    wav: str
    txt: str
    line: int = 0  # line in its data.list (1-based; 0 = not read from a list)


def read_data_list(path: str | Path) -> List[Utterance]:
    """Parse a data.list; a relative wav path is taken relative to the list's folder."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAsrError(f"{path}: data list not found")
    utts = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            key, wav, txt = obj["key"], obj["wav"], obj["txt"]
        except json.JSONDecodeError as exc:
            raise EdgeAsrError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        except (KeyError, TypeError):
            raise EdgeAsrError(f"{path}:{lineno}: each line needs 'key', 'wav' and 'txt'") from None
        wav_path = Path(wav)
        if not wav_path.is_absolute():
            wav_path = path.parent / wav_path
        utts.append(Utterance(str(key), str(wav_path), str(txt), lineno))
    if not utts:
        raise EdgeAsrError(f"{path}: data list is empty")
    return utts


def write_data_list(path: str | Path, utts: Iterable[Utterance]) -> None:
    """Write a data.list with wav paths relative to the list's folder."""
    path = Path(path)
    lines = []
    for u in utts:
        wav = os.path.relpath(u.wav, path.parent)  # relative, so the folder can move (DVC clones)
        lines.append(json.dumps({"key": u.key, "wav": wav, "txt": u.txt}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_symbol_table(path: str | Path) -> Dict[str, int]:
    """units.txt: '<token> <id>' per line -> {token: id}; ids must be 0..V-1."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAsrError(f"{path}: symbol table not found")
    table: Dict[str, int] = {}
    first_line: Dict[str, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise EdgeAsrError(f"{path}:{lineno}: expected '<token> <id>', got {line!r}")
        if parts[0] in table:
            raise EdgeAsrError(f"{path}:{lineno}: token {parts[0]!r} repeats line {first_line[parts[0]]}")
        table[parts[0]] = int(parts[1])
        first_line[parts[0]] = lineno
    if sorted(table.values()) != list(range(len(table))):
        raise EdgeAsrError(f"{path}: ids are not 0..{len(table) - 1} without gaps or repeats")
    return table
