"""Shared entry-point behaviour for stage scripts: one-line errors, non-zero exit, INFO logging."""

import csv
import json
import logging
import resource
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from .errors import EdgeAsrError


def run_stage(main: Callable[[list], None]) -> None:
    """Call main(argv); an EdgeAsrError becomes `error: <message>` on stderr and exit code 2.
    On success the stage prints its wall time and peak resident memory (`resources:` line)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("edgeasr").setLevel(logging.INFO)
    start = time.monotonic()
    try:
        main(sys.argv[1:])
    except EdgeAsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"resources: {Path(sys.argv[0]).stem} wall {time.monotonic() - start:.1f} s, "
          f"peak RSS {peak_rss_mb():.0f} MB")


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MB (Linux: ru_maxrss in KB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A stage's output folder, written whole or not at all.

    The previous outputs are removed first (they belong to other params); the new ones are written
    into `<path>.partial` and renamed to `path` only when the block finishes without an error, so a
    failed or interrupted run (Ctrl-C included) leaves no `path` that a later stage would accept."""
    partial = path.with_name(path.name + ".partial")
    for stale in (path, partial):
        if stale.exists():
            shutil.rmtree(stale)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(path)


def write_json(path: Path, obj: object) -> None:
    """A metrics or report file: UTF-8 JSON, indented, written whole (renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)


def read_json(path: Path, what: str, writer: Path) -> object:
    """A contract file a stage wrote (a manifest, a reference's index): a missing or unparsable one is
    a one-line error naming it and the folder whose stage writes it."""
    if not path.is_file():
        raise EdgeAsrError(f"{path}: not found (run the stage that writes {writer} first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgeAsrError(f"{path}: not a valid {what} ({type(exc).__name__}: {exc})") from None


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> None:
    """A report table: UTF-8 CSV with a header of `columns` (other keys of a row are left out),
    written whole (renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def fresh_dir(path: Path) -> Path:
    """An empty output folder: a stage's outputs never mix with a previous run's."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
