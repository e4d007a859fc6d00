"""A process that runs ONNX graphs in whatever onnxruntime its Python has, for `pinned_ort`.

Run as a program by another environment's Python (e.g. one with onnxruntime 1.13.1, WeNet's pin):
it imports only the standard library, numpy and onnxruntime, never edgeasr. Requests and replies are
length-prefixed .npz payloads on stdin / stdout (no pickle, so numpy versions may differ):

    request  {"__request__": JSON bytes, <feed name>: array, ...}
             JSON: {"op": "open", "path": ..., "threads": n} | {"op": "run", "id": k}
    reply    {"__reply__": JSON bytes, "output_0": array, ...}
             JSON: {"id": k, "inputs": [...], "version": ...} | {"outputs": n} | {"error": "..."}
"""

import io
import json
import struct
import sys

import numpy as np
import onnxruntime as ort

HEADER = struct.Struct("<Q")  # the payload's length in bytes


def read_message(stream) -> dict:
    """One length-prefixed npz payload -> {name: array}; {} at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return {}
    (length,) = HEADER.unpack(header)
    with np.load(io.BytesIO(stream.read(length)), allow_pickle=False) as payload:
        return {name: payload[name] for name in payload.files}


def write_message(stream, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def as_json(value: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def from_json(array: np.ndarray) -> dict:
    return json.loads(array.tobytes().decode("utf-8"))


def serve(stdin, stdout) -> None:
    sessions = []
    while True:
        message = read_message(stdin)
        if not message:
            return
        request = from_json(message.pop("__request__"))
        try:
            if request["op"] == "open":
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = int(request["threads"])
                opts.inter_op_num_threads = 1
                sessions.append(ort.InferenceSession(request["path"], opts, providers=["CPUExecutionProvider"]))
                reply = {"id": len(sessions) - 1, "version": ort.__version__,
                         "inputs": [i.name for i in sessions[-1].get_inputs()]}
                write_message(stdout, {"__reply__": as_json(reply)})
            else:
                outputs = sessions[int(request["id"])].run(None, message)
                write_message(stdout, {"__reply__": as_json({"outputs": len(outputs)}),
                                       **{f"output_{i}": np.asarray(o) for i, o in enumerate(outputs)}})
        except Exception as exc:  # the client shows it as one line
            write_message(stdout, {"__reply__": as_json({"error": f"{type(exc).__name__}: {exc}".splitlines()[0]})})


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
