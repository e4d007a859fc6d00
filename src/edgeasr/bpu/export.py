"""Export the X3 encoder and CTC graphs: opset 11, ir_version <= 7, static 4-D inputs, metadata.

Horizon's bernoulli2 toolchain reads ONNX opset 10/11 with ir_version <= 7. torch's default
(dynamo) exporter ignores opset_version, so the TorchScript exporter is used (dynamo=False) and the
saved file is checked. The metadata carries the geometry (read by every later stage) and the
hb_mapper input attributes (`input_name`, `input_shape`, `input_type`, layouts, `norm_type`).
"""

from pathlib import Path
from typing import Dict, Mapping, Sequence, Tuple

import onnx
import torch

from ..artifact.manifest import CTC_MODES, Artifact, read_manifest
from ..artifact.metadata import model_geometry, write_metadata
from ..artifact.onnx_io import default_opset, export_graph
from ..errors import EdgeAsrError
from ..model.asr_model import ASRModel
from .encoder import BpuCtc, BpuEncoder, zero_state
from .placement import placement_report, write_placement

OPSET = 11
MAX_IR_VERSION = 7
X3_GRAPHS = ("encoder", "ctc")  # the two graphs of the X3 path, in the order they run
FLOAT_ARTIFACT = "bpu_float"  # the manifest entry every later X3 stage takes the graphs from
# NOTE: WeNet's board runtime (runtime/horizonbpu/bpu/bpu_asr_model.cc) fills att_mask and copies
# the caches into the input tensors in NCHW order, and WeNet's exporter writes NCHW for both the
# training and the runtime layout. NHWC here would make hb_mapper insert a transpose that reads
# the runtime's NCHW buffers as NHWC (simulated: encoder output off by 1.6-2.7).
BOARD_LAYOUT = "NCHW"


def hb_mapper_attributes(shapes: Mapping[str, Tuple[int, ...]], outputs: Sequence[str]) -> Dict[str, str]:
    """The `;`-joined input attributes hb_mapper's config takes, one entry per input."""
    n = len(shapes)
    return {
        "input_name": ";".join(shapes),
        "input_shape": ";".join("x".join(str(d) for d in shape) for shape in shapes.values()),
        "input_type": ";".join(["featuremap"] * n),
        "input_layout_train": ";".join([BOARD_LAYOUT] * n),
        "input_layout_rt": ";".join([BOARD_LAYOUT] * n),
        "norm_type": ";".join(["no_preprocess"] * n),
        "output_name": ";".join(outputs),
    }


def export_static(module: torch.nn.Module, inputs: Mapping[str, torch.Tensor], outputs: Sequence[str], path: Path,
                  meta: Mapping[str, object]) -> Path:
    """Trace with static shapes at opset 11; assert opset, ir_version and 4-D static float inputs."""
    export_graph(module, tuple(inputs.values()), path, list(inputs), outputs, {}, OPSET)
    proto = onnx.load(str(path))
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION  # opset 11 needs IR 6; the exporter stamps its newest
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    write_metadata(path, {**meta, **hb_mapper_attributes({k: tuple(v.shape) for k, v in inputs.items()}, outputs)})
    check_saved(path, {k: tuple(v.shape) for k, v in inputs.items()})
    return path


def check_saved(path: Path, shapes: Mapping[str, Tuple[int, ...]]) -> None:
    """The saved file is what the X3 accepts: opset 11, ir <= 7, the inputs static 4-D float32, batch 1."""
    proto = onnx.load(str(path))
    opset = default_opset(proto)
    if opset != OPSET or proto.ir_version > MAX_IR_VERSION:
        raise EdgeAsrError(f"{path}: opset {opset} / ir_version {proto.ir_version}, X3 needs {OPSET} / <= 7")
    got = {}
    for value in proto.graph.input:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        if tensor.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4 or None in dims or dims[0] != 1:
            raise EdgeAsrError(f"{path}: input {value.name} is {dims}, X3 needs static 4-D float32 with N = 1")
        got[value.name] = dims
    if got != dict(shapes):
        raise EdgeAsrError(f"{path}: inputs {got}, expected {dict(shapes)}")


def export_bpu(model: ASRModel, encoder: BpuEncoder, ctc: BpuCtc, out_dir: Path) -> Dict[str, Path]:
    """encoder.onnx and ctc.onnx under out_dir, each with its op placement report beside it
    (<graph>.placement.json); returns name -> path of the graphs."""
    geometry = model_geometry(model, encoder.chunk_size, encoder.num_left_chunks)
    meta = {**geometry, "opset": OPSET, "model_type": "wenet_x3_bpu", "cache_frames": encoder.cache_frames,
            "layer_norm_on_bpu": int(any(getattr(m, "layer_norm_on_bpu", False) for m in encoder.modules()))}
    hidden = {"hidden": torch.zeros(1, encoder.output_size, 1, encoder.chunk_size)}
    paths = {
        "encoder": export_static(encoder, zero_state(encoder), encoder.output_names(), out_dir / "encoder.onnx", meta),
        "ctc": export_static(ctc, hidden, ["logits"], out_dir / "ctc.onnx", meta),
    }
    for path in paths.values():  # placed once, here: bpu_config and compile read the file
        write_placement(path, placement_report(path))
    return paths


def x3_artifacts(out: Path, paths: Mapping[str, Path], parity: Mapping[str, float],
                 tolerance: Mapping[str, float]) -> Dict[str, Artifact]:
    """exp/bpu's manifest entries: the float graphs fed as WeNet's board runtime feeds them, with the
    last window's padding masked (`exact`: frame for frame PyTorch's) and as the runtime does today
    (`board`: padding visible, every frame of the last chunk decoded; its frames do not align)."""
    files = {name: str(paths[name].relative_to(out)) for name in X3_GRAPHS}
    made = "export_bpu (exact 4-D rewrite, float32, opset 11)"
    return {
        FLOAT_ARTIFACT: Artifact("x3_onnx", files, "streaming", CTC_MODES, True, made + ", exact protocol",
                                 options={"protocol": "exact"}, tolerance=dict(tolerance), parity=dict(parity)),
        "bpu_float_board": Artifact("x3_onnx", files, "streaming", CTC_MODES, False,
                                    made + ", WeNet's board protocol (padding visible)", options={"protocol": "board"}),
    }


def x3_graphs(folder: Path) -> Dict[str, Path]:
    """graph name -> the float X3 graph export_bpu wrote (from its manifest)."""
    artifact = read_manifest(folder).artifacts[FLOAT_ARTIFACT]
    return {name: artifact.path(folder, name) for name in X3_GRAPHS}
