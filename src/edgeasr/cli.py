"""Shared entry-point behaviour for stage scripts: one-line errors, non-zero exit, INFO logging."""

import logging
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

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


def fresh_dir(path: Path) -> Path:
    """An empty output folder: a stage's outputs never mix with a previous run's."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
