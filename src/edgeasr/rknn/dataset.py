"""Calibration for the RK3588, written directly in rknn-toolkit2's dataset format.

The calibrate stage's rule (bpu.calibration: the same `calibrate.max_samples` utterances of the
calibration list, the same seeds, one randomly chosen chunk per utterance), applied to the RK3588's
own graph: each chosen utterance is streamed through the float fixed-cache graph with the host
protocol (decode.fixed_cache_backend), so the chosen chunk's inputs hold the real caches the chunks
before it built. rknn.build(dataset=LIST) reads a text file with one line per sample, that sample's
inputs as space-separated .npy paths in the graph's input order, relative to the list's folder (the
toolkit resolves them there, so the folder can move):

    <out>/<graph>/<input>/<utt>.<chunk>.npy          <out>/<graph>.txt          <out>/manifest.json
"""

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from tqdm import tqdm

from ..bpu.calibration import calibration_choice, streamed_chunks
from ..decode.fixed_cache_backend import FixedCacheBackend


def write_dataset(graph: Path, name: str, data_list: Path, max_samples: int, seed: int, out: Path
                  ) -> Tuple[Path, Dict[str, object]]:
    """Write the samples of graph `name` under `out`; returns the list file and the manifest."""
    backend = FixedCacheBackend(graph)
    prepared, chosen, note, rng = calibration_choice(data_list, max_samples, seed, backend.geometry.right_context)
    utts = prepared.utterances
    lines: List[str] = []
    samples: List[str] = []
    for index in tqdm(chosen, desc="calibrate rknn", unit="utt"):
        utt = utts[index].utt
        for chunk_index, picked, feeds, _ in streamed_chunks(backend, utts[index].feats, rng):
            if not picked:
                continue
            paths = []
            for input_name, array in feeds.items():
                path = out / name / input_name / f"{utt.key}.{chunk_index}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.ascontiguousarray(array, dtype=np.float32))
                paths.append(str(path.relative_to(out)))
            lines.append(" ".join(paths))
            samples.append(f"{utt.key}.{chunk_index}")
            break  # the chunks after it do not matter
    list_file = out / f"{name}.txt"
    list_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = {"data_list": str(data_list), "data": prepared.report, "utterances_available": len(utts),
                "utterances_used": len(samples), "max_samples": max_samples, "seed": seed, "samples": samples,
                "inputs": {k: list(v) for k, v in backend.shapes.items()}, "note": note}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return list_file, manifest


def first_sample(list_file: Path) -> List[str]:
    """The .npy paths of the list's first sample (the input of the toolkit's accuracy analysis)."""
    return [str(list_file.parent / name) for name in list_file.read_text(encoding="utf-8").splitlines()[0].split()]


def listed_samples(list_file: Path) -> List[Path]:
    """Every .npy file the list names, in its order."""
    return [list_file.parent / name for line in list_file.read_text(encoding="utf-8").splitlines()
            for name in line.split()]
