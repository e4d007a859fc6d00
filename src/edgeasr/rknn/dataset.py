"""The calibrate stage's samples (real chunk inputs with real caches) in rknn-toolkit2's dataset format.

rknn.build(dataset=LIST) reads a text file with one line per sample, that sample's inputs as
space-separated .npy paths in the graph's input order, relative to the list's folder (the toolkit
resolves them there, so the folder can move: compile writes it under exp/rknn.partial):

    <out>/<model>/<input>/<sample>.npy          <out>/<model>.txt

The same samples hb_mapper calibrates from (exp/calibration), so the two toolchains quantize from
identical data.
"""

from pathlib import Path
from typing import List, Tuple

import numpy as np

from ..artifact.onnx_io import graph_inputs
from ..bpu.calibration import calibration_folders, read_samples


def write_dataset(calibration: Path, model: str, graph: Path, out: Path, limit: int) -> Tuple[Path, int]:
    """Write up to `limit` samples (0 = all) of `model`'s calibration inputs; returns the list file and
    the number of samples."""
    inputs = graph_inputs(graph)
    shapes = dict(inputs)
    folders = calibration_folders(calibration, model, [name for name, _ in inputs])
    lines = []
    for index, sample in enumerate(read_samples(folders, shapes, limit)):
        paths = []
        for name, _ in inputs:
            path = out / model / name / f"{index:05d}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, sample[name])
            paths.append(str(path.relative_to(out)))
        lines.append(" ".join(paths))
    list_file = out / f"{model}.txt"
    list_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list_file, len(lines)


def first_sample(list_file: Path) -> List[str]:
    """The .npy paths of the list's first sample (the input of the toolkit's accuracy analysis)."""
    return [str(list_file.parent / name) for name in list_file.read_text(encoding="utf-8").splitlines()[0].split()]
