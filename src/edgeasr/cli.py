"""Shared entry-point behaviour for stage scripts: one-line errors, non-zero exit, INFO logging."""

import logging
import shutil
import sys
from pathlib import Path
from typing import Callable

from .errors import EdgeAsrError


def run_stage(main: Callable[[list], None]) -> None:
    """Call main(argv); an EdgeAsrError becomes `error: <message>` on stderr and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("edgeasr").setLevel(logging.INFO)
    try:
        main(sys.argv[1:])
    except EdgeAsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def fresh_dir(path: Path) -> Path:
    """An empty output folder: a stage's outputs never mix with a previous run's."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
