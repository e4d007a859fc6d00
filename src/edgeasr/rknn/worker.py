"""The half of the RK3588 path that runs inside rknn-toolkit2's own environment.

rknn-toolkit2 pins torch <= 2.4, numpy <= 1.26.4, onnx <= 1.18 and protobuf <= 4.25.4, so it is never
imported into edgeasr's environment: edgeasr runs this file with the toolkit's Python
(`edgeasr.rknn.toolkit`), and this file imports nothing from edgeasr. Two commands, each given one
JSON job file:

    python worker.py build JOB.json   load_onnx -> build(do_quantization) -> export_rknn ->
                                      accuracy_analysis; the verbose log (with the toolkit's layer
                                      table: op, NPU or CPU, name) goes to stdout
    python worker.py serve JOB.json   build every model of the job again (the simulator runs only a
                                      model built in the same session), init_runtime() with no
                                      target = the x86 simulator, then answer inference requests

JOB.json: {"config": {rknn.config() keyword arguments}, "models": {name: {"onnx": path,
"dataset": path of the list file (one line per sample, inputs space-separated .npy paths),
and, for build only, "rknn": output path, "analysis_inputs": [.npy per input], "analysis_dir": path}}}.

The serve protocol, on the pipes edgeasr opened: a request is one JSON line {"model": name,
"shapes": [...]} on stdin followed by the raw float32 bytes (C order) of each graph input in the
graph's input order; the answer is a JSON line {"shapes": [...]} followed by the outputs' bytes, on
file descriptor 1, which the protocol keeps to itself (the toolkit's own prints go to stderr).
edgeasr imports `write_arrays` and `read_arrays` from here (rknn.api is imported only when a command
runs), so both ends frame alike.
"""

import json
import os
import sys

from typing import BinaryIO, List, Optional, Sequence

import numpy as np


def write_arrays(stream: BinaryIO, arrays: Sequence[np.ndarray], **header: object) -> None:
    """One JSON line (`header` plus the shapes), then each array's float32 bytes."""
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    stream.write(json.dumps({**header, "shapes": [list(a.shape) for a in arrays]}).encode() + b"\n")
    for array in arrays:
        stream.write(array.tobytes())
    stream.flush()


def read_arrays(stream: BinaryIO) -> Optional[tuple]:
    """(header, arrays) of one message, None at the end of the stream."""
    line = stream.readline()
    if not line:
        return None
    header = json.loads(line)
    arrays: List[np.ndarray] = []
    for shape in header["shapes"]:
        size = 4 * int(np.prod(shape, dtype=np.int64))
        data = stream.read(size)
        if len(data) != size:
            raise EOFError(f"a {shape} float32 array ended after {len(data)} of {size} bytes")
        arrays.append(np.frombuffer(data, dtype=np.float32).reshape(shape))
    return header, arrays


def _check(code: int, what: str, name: str) -> None:
    if code != 0:
        raise SystemExit(f"rknn-toolkit2: {what} failed for {name} (return code {code})")


def _built(name: str, model: dict, config: dict, verbose: bool):
    from rknn.api import RKNN  # the toolkit's environment only

    rknn = RKNN(verbose=verbose)
    _check(rknn.config(**config), "config", name)
    _check(rknn.load_onnx(model["onnx"]), "load_onnx", name)
    _check(rknn.build(do_quantization=True, dataset=model["dataset"]), "build", name)
    return rknn


def build(job: dict) -> None:
    for name, model in job["models"].items():
        rknn = _built(name, model, job["config"], verbose=True)
        _check(rknn.export_rknn(model["rknn"]), "export_rknn", name)
        _check(rknn.accuracy_analysis(inputs=model["analysis_inputs"], output_dir=model["analysis_dir"]),
               "accuracy_analysis", name)
        rknn.release()


def serve(job: dict) -> None:
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the toolkit prints to stdout; from here on that is stderr
    sys.stdout = sys.stderr
    models = {}
    for name, model in job["models"].items():
        rknn = _built(name, model, job["config"], verbose=False)
        _check(rknn.init_runtime(), "init_runtime (simulator)", name)
        models[name] = rknn
    protocol.write(b'{"ready": true}\n')
    protocol.flush()
    requests = sys.stdin.buffer
    while True:
        message = read_arrays(requests)
        if message is None:
            break
        request, inputs = message
        # NOTE: data_format "nchw" for every input: these are feature maps and caches, not images, and
        # the default (NHWC for 4-D inputs) would transpose them.
        outputs = models[request["model"]].inference(inputs=list(inputs), data_format=["nchw"] * len(inputs))
        write_arrays(protocol, outputs)
    for rknn in models.values():
        rknn.release()


if __name__ == "__main__":
    command, job_path = sys.argv[1], sys.argv[2]
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    {"build": build, "serve": serve}[command](job)
