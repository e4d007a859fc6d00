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
    python worker.py tensors JOB.json hybrid_quantization_step1 only: write the tensors its
                                      quantization config lists, with their dtypes and whether
                                      a layer of the step-1 graph outputs them, to "tensors"

JOB.json: {"config": {rknn.config() keyword arguments}, "models": {name: {"onnx": path,
"dataset": path of the list file (one line per sample, inputs space-separated .npy paths),
optionally "float16_tensors": [tensor names] (hybrid quantization: those layers' outputs in float16,
the rest INT8), and, for build only, "rknn": output path, "analysis_inputs": [.npy per input],
"analysis_dir": path; for tensors only, "tensors": output path (JSON)}}}.

Hybrid quantization (rknn-toolkit2 2.5.0): hybrid_quantization_step1 writes <onnx stem>.model,
.data and .quantization.cfg into the working directory (a scratch one: edgeasr runs the worker
there); the cfg's `custom_quantize_layers: {}` takes tensor names as its `quantize_parameters:` lists
them, each mapped to a dtype, and hybrid_quantization_step2 builds from the three files.

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


CUSTOM_LAYERS = "custom_quantize_layers: {}\n"  # the first line of a step-1 cfg, before any edit
_LISTED = "    "  # the indent of a tensor name under quantize_parameters (the toolkit's own YAML writer)


def listed_tensors(cfg: str) -> List[tuple]:
    """(tensor, dtype) of every entry under a step-1 cfg's `quantize_parameters:`, in its order.
    NOTE: the toolkit's environment has no YAML parser; the file is the toolkit's own fixed layout."""
    out: List[tuple] = []
    section = False
    for line in cfg.splitlines():
        if not line.startswith(" "):
            section = line.rstrip() == "quantize_parameters:"
        elif section and line.startswith(_LISTED) and not line.startswith(_LISTED + " ") and line.endswith(":"):
            out.append([line.strip()[:-1], None])
        elif section and out and line.strip().startswith("dtype:"):
            out[-1][1] = out[-1][1] or line.split(":", 1)[1].strip()
    return [tuple(entry) for entry in out]


def with_float16(cfg: str, tensors: Sequence[str], source: str) -> str:
    """The step-1 cfg with `tensors` set to float16 in custom_quantize_layers."""
    if not cfg.startswith(CUSTOM_LAYERS):
        raise SystemExit(f"{source}: does not start with {CUSTOM_LAYERS.strip()!r} (another toolkit version?)")
    known = {name for name, _ in listed_tensors(cfg)}
    unknown = [t for t in tensors if t not in known]
    if unknown:
        raise SystemExit(f"{source}: {len(unknown)} float16 tensors not in its quantize_parameters, e.g. {unknown[0]!r}")
    quoted = "".join(f"{_LISTED}'{t.replace(chr(39), chr(39) * 2)}': float16\n" for t in tensors)
    return "custom_quantize_layers:\n" + quoted + cfg[len(CUSTOM_LAYERS):]


def _step1(name: str, model: dict, config: dict, verbose: bool) -> tuple:
    """hybrid_quantization_step1 in the working directory -> its (model, data, cfg) file names."""
    from rknn.api import RKNN  # the toolkit's environment only

    rknn = RKNN(verbose=verbose)
    _check(rknn.config(**config), "config", name)
    _check(rknn.load_onnx(model["onnx"]), "load_onnx", name)
    _check(rknn.hybrid_quantization_step1(dataset=model["dataset"], proposal=False), "hybrid_quantization_step1", name)
    rknn.release()
    stem = os.path.splitext(os.path.basename(model["onnx"]))[0]
    return f"{stem}.model", f"{stem}.data", f"{stem}.quantization.cfg"


def _built(name: str, model: dict, config: dict, verbose: bool):
    """The model built INT8, or with hybrid quantization when it names float16 tensors."""
    from rknn.api import RKNN  # the toolkit's environment only

    float16 = model.get("float16_tensors") or []
    if not float16:
        rknn = RKNN(verbose=verbose)
        _check(rknn.config(**config), "config", name)
        _check(rknn.load_onnx(model["onnx"]), "load_onnx", name)
        _check(rknn.build(do_quantization=True, dataset=model["dataset"]), "build", name)
        return rknn
    model_file, data_file, cfg_file = _step1(name, model, config, verbose)
    with open(cfg_file, encoding="utf-8") as f:
        cfg = with_float16(f.read(), float16, cfg_file)
    edited = cfg_file.replace(".quantization.cfg", ".float16.cfg")
    with open(edited, "w", encoding="utf-8") as f:
        f.write(cfg)
    rknn = RKNN(verbose=verbose)
    _check(rknn.hybrid_quantization_step2(model_input=model_file, data_input=data_file,
                                          model_quantization_cfg=edited), "hybrid_quantization_step2", name)
    return rknn


def tensors(job: dict) -> None:
    import onnx  # the toolkit's environment has it (its pin: onnx <= 1.18)

    for name, model in job["models"].items():
        model_file, _, cfg_file = _step1(name, model, job["config"], verbose=False)
        with open(cfg_file, encoding="utf-8") as f:
            listed = listed_tensors(f.read())
        # NOTE: custom_quantize_layers takes only layer outputs of the step-1 graph (an ONNX file):
        # the cfg also lists graph inputs and constants ('/.../Div_2mul_i1'), which it refuses.
        graph = onnx.load(model_file, load_external_data=False).graph
        outputs = {output for node in graph.node for output in node.output}
        with open(model["tensors"], "w", encoding="utf-8") as f:
            json.dump([{"tensor": t, "dtype": d, "layer_output": t in outputs} for t, d in listed], f, indent=1)


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
    {"build": build, "serve": serve, "tensors": tensors}[command](job)
