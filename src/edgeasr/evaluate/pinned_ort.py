"""The cpu families decoded by another onnxruntime (WeNet's runtime pins 1.13.1 and 1.14.0) beside
this environment's, on the same utterances, with the same searches: does a user of WeNet's runtime get
the hypotheses edgeasr reports?

    pyenv's 3.10:  python3.10 -m venv /opt/ort113 && /opt/ort113/bin/pip install onnxruntime==1.13.1 'numpy<2'
    python -m edgeasr.evaluate.pinned_ort /opt/ort113/bin/python --utts 300   # in a workspace after dvc repro

Every session.run of the backend (encoder chunks, CTC, the rescoring decoder) is sent to
`ort_server.py` running under that Python (numpy and onnxruntime only; .npz over pipes), so the
streaming driver, the caches it feeds back and every search are edgeasr's, and only the runtime
differs. Prints, per family and mode, CER here and there and the share of identical hypotheses.
"""

import argparse
import json
import subprocess
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnxruntime
import yaml

from ..artifact.manifest import read_manifest
from ..decode import DecodeOptions
from ..decode.onnx_backend import OnnxCpuBackend
from ..errors import EdgeAsrError
from ..frontend.datalist import read_symbol_table
from ..frontend.dataset import load_utterances
from ..frontend.tokens import id_to_token as inverse_table
from ..model.subsampling import min_input_frames
from ..paths import EXPORT
from .backends import open_backend
from .cer import score
from .ort_server import as_json, from_json, read_message, write_message
from .runner import decode_utterances

SERVER = Path(__file__).with_name("ort_server.py")
FAMILIES = ("cpu", "cpu_int8")  # what WeNet's C++ runtime loads (`decoder_main --onnx_dir`)


class OrtServer:
    """`ort_server.py` under another Python, started and stopped with the block."""

    def __init__(self, python: Path, log: Path):
        self.python, self.log = python, log

    def __enter__(self) -> "OrtServer":
        if not Path(self.python).is_file():
            raise EdgeAsrError(f"{self.python}: no such Python (the environment with the pinned onnxruntime)")
        self._log = open(self.log, "w", encoding="utf-8")
        self.proc = subprocess.Popen([str(self.python), str(SERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def request(self, request: Mapping, arrays: Optional[Mapping[str, np.ndarray]] = None
                ) -> Tuple[dict, Dict[str, np.ndarray]]:
        write_message(self.proc.stdin, {"__request__": as_json(dict(request)), **(arrays or {})})
        message = read_message(self.proc.stdout)
        if not message:
            raise EdgeAsrError(f"{self.python}: the onnxruntime server stopped ({self.log})")
        reply = from_json(message.pop("__reply__"))
        if "error" in reply:
            raise EdgeAsrError(f"{self.python}: {reply['error']}")
        return reply, message

    def session(self, path: Path, threads: int = 1) -> "ServedSession":
        reply, _ = self.request({"op": "open", "path": str(Path(path).resolve()), "threads": threads})
        self.version = reply["version"]
        return ServedSession(self, reply["id"], reply["inputs"])


class ServedSession:
    """What a backend calls on an InferenceSession (run, get_inputs), answered by the server."""

    def __init__(self, server: OrtServer, session_id: int, inputs: Sequence[str]):
        self.server, self.id, self.inputs = server, session_id, list(inputs)

    def get_inputs(self) -> List[SimpleNamespace]:
        return [SimpleNamespace(name=name) for name in self.inputs]

    def run(self, _names: object, feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
        reply, arrays = self.server.request({"op": "run", "id": self.id}, feeds)
        return [arrays[f"output_{i}"] for i in range(int(reply["outputs"]))]


def served_backend(server: OrtServer, files: Mapping[str, Path]) -> OnnxCpuBackend:
    """The cpu backend with every graph run by `server` (geometry read here from the same files)."""
    backend = OnnxCpuBackend(files["encoder"], files["ctc"], files["decoder"])
    backend.encoder = server.session(files["encoder"])
    backend.ctc = server.session(files["ctc"])
    if backend.decoder is not None:
        backend.decoder = server.session(files["decoder"])
    return backend


def compare_runtimes(workspace: Path, python: Path, utts: int) -> Dict[str, object]:
    """{family: {mode: {cer_here, cer_pinned, identical}}, versions} on the workspace's first test set."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    compare, streaming = params["compare"], params["streaming"]
    test_list = workspace / next(iter(params["data"]["test_sets"].values()))
    manifest = read_manifest(workspace / EXPORT)
    id_to_token = inverse_table(read_symbol_table(workspace / params["model"]["dir"] / "units.txt"))
    result: Dict[str, object] = {"test_list": str(test_list)}
    with ExitStack() as stack, OrtServer(python, workspace / "exp" / "pinned_ort.log") as server:
        for family in FAMILIES:
            artifact = manifest.artifacts[family]
            files = {role: artifact.path(manifest.folder, role) for role in artifact.files}
            here = open_backend(artifact, manifest.folder, 1, stack)
            pinned = served_backend(server, files)
            prepared = load_utterances(test_list, utts, min_input_frames(here.geometry.right_context)).utterances
            modes = tuple(m for m in compare["modes"] if m in artifact.modes)
            opts = DecodeOptions(streaming["chunk_size"], streaming["num_decoding_left_chunks"], modes=modes,
                                 beam_size=compare["beam_size"], ctc_weight=compare["ctc_weight"],
                                 reverse_weight=compare["reverse_weight"])
            decoded = {name: decode_utterances(backend, prepared, opts, id_to_token, f"{family} {name}")
                       for name, backend in (("here", here), ("pinned", pinned))}
            refs = [p.utt.txt for p in prepared]
            result[family] = {mode: {
                "cer_here": score(zip(refs, (h[mode] for h in decoded["here"].hyps))).as_dict()["cer"],
                "cer_pinned": score(zip(refs, (h[mode] for h in decoded["pinned"].hyps))).as_dict()["cer"],
                "identical": sum(a[mode] == b[mode] for a, b in zip(decoded["here"].hyps, decoded["pinned"].hyps))
                / len(prepared)} for mode in modes}
        result["versions"] = {"here": onnxruntime.__version__, "pinned": server.version}
        result["utterances"] = len(prepared)
    return result


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Decode the cpu families in another onnxruntime beside this one.")
    parser.add_argument("python", type=Path, help="the Python of the environment with the pinned onnxruntime")
    parser.add_argument("--workspace", type=Path, default=Path("."))
    parser.add_argument("--utts", type=int, default=0, help="first N utterances of the first test set (0: all)")
    args = parser.parse_args(argv)
    result = compare_runtimes(args.workspace, args.python, args.utts)
    versions = result["versions"]
    print(f"onnxruntime {versions['here']} (here) vs {versions['pinned']} ({args.python}), "
          f"{result['utterances']} utterances of {result['test_list']}")
    print(f"{'family':10} {'mode':20} {'CER here':>9} {'CER pinned':>11} {'identical':>10}")
    for family in FAMILIES:
        for mode, row in result[family].items():
            print(f"{family:10} {mode:20} {row['cer_here']:9.4f} {row['cer_pinned']:11.4f} {row['identical']:10.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    from ..cli import run_stage

    run_stage(main)
