"""Calibration data for hb_mapper: real chunk inputs with real caches, in its on-disk layout.

For a seeded sample of utterances, each is streamed through the X3 float encoder (the board
protocol, exact variant), so every chunk sees the caches the chunks before it built. One randomly
chosen chunk per utterance gives the encoder's calibration sample (all of its inputs); every chunk's
encoder output is a sample for the CTC graph. Files are raw headerless float32 in the exact input
shape (C order), one folder per model input:

    <out>/encoder/<input_name>/<utt>.<chunk>.bin     <out>/ctc/hidden/<utt>.<chunk>.bin

plus <out>/manifest.json. Same list, seed and model: the same bytes.
"""

import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ..decode.bpu_backend import OnnxBpuBackend
from ..decode.streaming import chunk_windows
from ..errors import EdgeAsrError
from ..frontend.dataset import PreparedSet, load_utterances
from ..model.subsampling import min_input_frames

log = logging.getLogger(__name__)

ENCODER_DIR, CTC_DIR = "encoder", "ctc"


def select_utterances(num_available: int, max_samples: int, seed: int) -> List[int]:
    """Sorted indices of a seeded sample of `max_samples` (all of them when fewer are available)."""
    if max_samples <= 0:
        raise EdgeAsrError(f"calibrate.max_samples: {max_samples} (must be a positive number of utterances)")
    if num_available == 0:
        raise EdgeAsrError("calibration list is empty")
    if max_samples >= num_available:
        return list(range(num_available))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(num_available, size=max_samples, replace=False))


def calibration_choice(data_list: Path, max_samples: int, seed: int, right_context: int
                       ) -> Tuple[PreparedSet, List[int], str, np.random.Generator]:
    """The rule every target's calibration shares: the usable utterances of the list (the data policy
    of frontend.dataset), the sorted indices of the seeded sample of `max_samples` of them, a note
    when fewer exist, and the generator that draws one chunk per chosen utterance, in their order."""
    prepared = load_utterances(data_list, 0, min_input_frames(right_context))
    chosen = select_utterances(len(prepared.utterances), max_samples, seed)
    note = ""
    if max_samples > len(prepared.utterances):
        note = f"asked for {max_samples} utterances, {data_list} has {len(prepared.utterances)} usable: all are used"
        log.warning(note)
    return prepared, chosen, note, np.random.default_rng(seed + 1)


def streamed_chunks(backend: Any, feats: np.ndarray, rng: np.random.Generator
                    ) -> Iterator[Tuple[int, bool, Dict[str, np.ndarray], Any]]:
    """Stream one utterance (T, F) through `backend` (anything with start_stream and step(window,
    state) -> feeds, output, valid, state) with its caches carried over; yield per chunk (its index,
    whether it is the utterance's calibration chunk, its feeds, its output). The calibration chunk is
    one draw of `rng` per utterance: the same rule for every target."""
    windows = list(chunk_windows(feats.shape[0], backend.geometry, backend.chunk_size))
    pick = int(rng.integers(len(windows)))
    state = backend.start_stream(backend.chunk_size, backend.num_left_chunks)
    for index, (start, end) in enumerate(windows):
        feeds, output, _, state = backend.step(feats[start:end], state)
        yield index, index == pick, feeds, output


def write_sample(folder: Path, name: str, array: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(array, dtype=np.float32).tofile(folder / name)


def build_calibration(encoder: Path, ctc: Path, data_list: Path, max_samples: int, seed: int, out: Path) -> dict:
    """Write the calibration folders under `out`; returns the manifest. The list is read under the
    data policy every stage shares (frontend.dataset): an unreadable file stops naming its line, an
    utterance shorter than one output frame is skipped and counted in the manifest's `data`."""
    backend = OnnxBpuBackend(encoder, ctc, "exact")
    prepared, chosen, note, rng = calibration_choice(data_list, max_samples, seed, backend.geometry.right_context)
    utts = prepared.utterances
    counts: Dict[str, int] = {}
    samples: List[str] = []
    for index in tqdm(chosen, desc="calibrate", unit="utt"):
        utt = utts[index].utt
        for chunk_index, picked, feeds, hidden in streamed_chunks(backend, utts[index].feats, rng):
            stem = f"{utt.key}.{chunk_index}.bin"
            if picked:
                for name, array in feeds.items():
                    write_sample(out / ENCODER_DIR / name, stem, array)
                    counts[name] = counts.get(name, 0) + 1
                samples.append(stem)
            write_sample(out / CTC_DIR / "hidden", stem, hidden)
            counts["hidden"] = counts.get("hidden", 0) + 1
    manifest = {
        "data_list": str(data_list),
        "data": prepared.report,
        "utterances_available": len(utts),
        "utterances_used": len(samples),
        "max_samples": max_samples,
        "seed": seed,
        "encoder_samples": samples,
        "files_per_input": dict(sorted(counts.items())),
        "shapes": {i.name: list(i.shape) for i in backend.encoder.get_inputs()} | {"hidden": list(
            backend.ctc.get_inputs()[0].shape)},
        "note": note,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_samples(folders: Mapping[str, Path], shapes: Mapping[str, Sequence[int]], limit: int = 0) -> Iterator[dict]:
    """{input: array} per sample, from one folder per input with the same file names in each."""
    first = next(iter(folders.values()))
    names = sorted(p.name for p in first.glob("*.bin"))
    if not names:
        raise EdgeAsrError(f"{first}: no calibration samples (*.bin)")
    for name in names[: limit or None]:
        yield {key: _read_sample(folder / name, key, shapes[key]) for key, folder in folders.items()}


def _read_sample(path: Path, input_name: str, shape: Sequence[int]) -> np.ndarray:
    """One float32 sample of a graph input; a missing or truncated one is a one-line error."""
    if not path.is_file():
        raise EdgeAsrError(f"{path}: calibration sample missing for input {input_name}: "
                           f"rerun dvc repro -f -s calibrate")
    array = np.fromfile(path, dtype=np.float32)
    if array.size != int(np.prod(shape)):
        raise EdgeAsrError(f"{path}: {path.stat().st_size} bytes, input {input_name} {list(shape)} needs "
                           f"{4 * int(np.prod(shape))} (a damaged calibration sample): rerun dvc repro -f -s calibrate")
    return array.reshape(shape)


def calibration_folders(cal_dir: Path, model: str, input_names: Sequence[str]) -> Dict[str, Path]:
    """input name -> its folder, for the encoder's or the CTC graph's inputs."""
    return {name: cal_dir / model / name for name in input_names}
