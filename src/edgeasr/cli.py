"""Shared entry-point behaviour for stage scripts: one-line errors, non-zero exit, INFO logging."""

import csv
import errno
import json
import logging
import resource
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

from .errors import EdgeAsrError


class Terminated(BaseException):
    """SIGTERM (a scheduler, a CI timeout, `kill`) raised where the stage is, so that every `with`
    block unwinds: partial outputs are removed and Dask workers stopped, as on Ctrl-C. A BaseException,
    like KeyboardInterrupt, so that no `except Exception` swallows it."""


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


# A write the kernel refused for lack of room: one line instead of a traceback.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def run_stage(main: Callable[[list], None]) -> None:
    """Call main(argv); an EdgeAsrError becomes `error: <message>` on stderr and exit code 2, a full
    disk (or quota, or file-size limit) one line and exit 2, SIGTERM and Ctrl-C one line and 143 / 130
    after the outputs in progress were removed. On success the stage prints its wall time and peak
    resident memory (`resources:` line)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("edgeasr").setLevel(logging.INFO)
    signal.signal(signal.SIGTERM, _terminate)
    start = time.monotonic()
    stage = Path(sys.argv[0]).stem
    try:
        main(sys.argv[1:])
    except EdgeAsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in NO_ROOM:
            raise
        print(f"error: {exc.filename or stage}: {exc.strerror} (a full disk, quota or file-size limit): "
              f"{stage} kept nothing it was writing", file=sys.stderr)
        sys.exit(2)
    except (Terminated, KeyboardInterrupt) as exc:
        name = str(exc) if isinstance(exc, Terminated) else "SIGINT"
        print(f"error: {stage} stopped by {name}: it kept nothing it was writing (rerun it)", file=sys.stderr)
        sys.exit(128 + getattr(signal, name))
    print(f"resources: {stage} wall {time.monotonic() - start:.1f} s, peak RSS {peak_rss_mb():.0f} MB")


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
    try:
        partial.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
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


def write_off_outputs(note: str, folders: Sequence[Path] = (), metrics: Sequence[Path] = (),
                      tables: Optional[Mapping[Path, Sequence[str]]] = None) -> None:
    """The outputs of a stage that builds nothing in this run (a target not chosen): each folder holds
    only README.txt with `note`, each metrics file `{"note": note}`, each table its header alone, so
    no later stage or `dvc metrics show` finds a result from an earlier run."""
    for folder in folders:
        (fresh_dir(folder) / "README.txt").write_text(note + "\n", encoding="utf-8")
    for path in metrics:
        write_json(path, {"note": note})
    for path, columns in (tables or {}).items():
        write_csv(path, columns, [])
    print(note)
