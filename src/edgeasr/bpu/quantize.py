"""Emulated X3 INT8 quantization with onnxruntime, and float-vs-quantized cosine per node.

hb_mapper quantizes the nodes the BPU runs to symmetric INT8 and leaves CPU nodes in float. The
emulation does the same: static QDQ, symmetric activations and weights, only the nodes the
placement report puts on the BPU (minus `run_on_cpu`). hb_mapper's calibration types map to
onnxruntime calibrators:

    max                  -> MinMax
    max + max_percentile -> Percentile (the percentile of |x|, 2048-bin histogram)
    kl                   -> Entropy with a 512-bin histogram and 128 quantized bins. onnxruntime's
                            quantize_static does not forward the bin settings, and its defaults
                            (128 / 128) make Entropy pick the full range, i.e. MinMax: so we run
                            the calibrator ourselves and hand its ranges to the QDQ quantizer.
    default              -> max, max with percentile 0.99995 and kl are each tried; the one whose
                            output cosine on the first calibration sample is best is kept, as
                            hb_mapper does ("Select kl method.").
    mix                  -> the same three candidates chosen per tensor: the range whose INT8
                            rounding keeps that tensor closest to float (cosine), as hb_mapper's
                            docs describe mix (a per-node search by cosine).

Ranges are computed once per graph (`calibrate`) and then applied to any subset of its nodes
(`write_qdq`): the per-group sensitivity and the float-set search quantize many subsets.
"""

import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantType
from onnxruntime.quantization.calibrate import TensorData, TensorsData, create_calibrator
from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

from ..errors import EdgeAsrError
from ..similarity import PooledCosine

KL_NUM_BINS, KL_QUANTIZED_BINS = 512, 128  # finer than the quantized grid, so KL can clip; onnxruntime
# searches thresholds in a Python loop per tensor (2048 bins: ~0.5 s per tensor), 512 keeps it ~4x cheaper
CALIBRATION_BATCH = 8  # calibration samples whose intermediate tensors are held in memory at once
DEFAULT_PERCENTILE = 0.99995  # hb_mapper's percentile candidate in `default`
DEFAULT_CANDIDATES = (("max", 1.0), ("max", DEFAULT_PERCENTILE), ("kl", 1.0))
MIX_SAMPLES = 4  # calibration samples whose tensors `mix` compares the candidates on


class Samples(CalibrationDataReader):
    """Feeds a list of {input: array} to an onnxruntime calibrator."""

    def __init__(self, samples: Sequence[Mapping[str, np.ndarray]]):
        self.samples = list(samples)
        self.position = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.position >= len(self.samples):
            return None
        self.position += 1
        return dict(self.samples[self.position - 1])

    def rewind(self) -> None:
        self.position = 0


def calibration_method(calibration_type: str, max_percentile: float) -> Tuple[CalibrationMethod, dict]:
    """hb_mapper's calibration_type (+ max_percentile) -> onnxruntime calibrator and its options."""
    if calibration_type == "max":
        if max_percentile < 1.0:
            return CalibrationMethod.Percentile, {"percentile": 100.0 * max_percentile, "num_bins": 2048,
                                                  "symmetric": True}
        return CalibrationMethod.MinMax, {"symmetric": True}
    if calibration_type == "kl":
        return CalibrationMethod.Entropy, {"num_bins": KL_NUM_BINS, "num_quantized_bins": KL_QUANTIZED_BINS,
                                           "symmetric": True}
    raise EdgeAsrError(f"calibration_type {calibration_type!r}: the emulation supports default, max, kl")


def tensor_ranges(model: Path, samples: Sequence[Mapping[str, np.ndarray]], op_types: Sequence[str],
                  calibration_type: str, max_percentile: float) -> TensorsData:
    method, options = calibration_method(calibration_type, max_percentile)
    with tempfile.TemporaryDirectory() as tmp:
        calibrator = create_calibrator(model, list(op_types), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method, extra_options=options)
        # Every intermediate tensor of a batch is held at once (5.6 GB for 50 samples of the 110M
        # model): feed batches; each collect_data call folds its batch into the ranges/histograms.
        for start in range(0, len(samples), CALIBRATION_BATCH):
            calibrator.collect_data(Samples(samples[start : start + CALIBRATION_BATCH]))
        return calibrator.compute_data()


def write_qdq(model: Path, ranges: TensorsData, nodes: Sequence[str], per_channel: bool, out: Path) -> Path:
    """Static symmetric INT8 QDQ of `nodes` only, with ranges computed beforehand; every other node
    stays float. The same ranges serve any subset of the nodes they were computed for."""
    proto = onnx.load(str(model))
    chosen = set(nodes)
    op_types = sorted({n.op_type for n in proto.graph.node if n.name in chosen})
    quantizer = QDQQuantizer(
        load_model_with_shape_infer(model), per_channel, False, QuantType.QInt8, QuantType.QInt8, ranges,
        list(nodes), [], op_types,
        {"ActivationSymmetric": True, "WeightSymmetric": True, "ForceQuantizeNoInputCheck": True},
    )
    quantizer.quantize_model()
    out.parent.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(out))
    return out


def node_op_types(model: Path, nodes: Sequence[str]) -> List[str]:
    chosen = set(nodes)
    return sorted({n.op_type for n in onnx.load(str(model)).graph.node if n.name in chosen})


def fake_quant_cosine(x: np.ndarray, bound: float) -> float:
    """Cosine of x and its symmetric INT8 rounding with clipping bound `bound`."""
    scale = max(bound, 1e-12) / 127.0
    pooled = PooledCosine()
    pooled.add(x, np.clip(np.round(x / scale), -128, 127) * scale)
    return pooled.value()


def mix_ranges(model: Path, samples: Sequence[Mapping[str, np.ndarray]],
               candidates: Mapping[str, TensorsData]) -> Tuple[TensorsData, Dict[str, int]]:
    """hb_mapper's `mix`: per tensor, the candidate range whose INT8 rounding keeps the tensor's
    values closest (cosine over `samples`); returns the ranges and how often each candidate won."""
    names = sorted(set.intersection(*(set(c.keys()) for c in candidates.values())))
    proto = onnx.load(str(model))
    session = _plain_session(_with_all_outputs(proto, names))
    outputs = [o.name for o in session.get_outputs()]
    values: Dict[str, List[np.ndarray]] = {n: [] for n in names}
    for sample in samples:
        for name, value in zip(outputs, session.run(None, dict(sample))):
            if name in values:
                values[name].append(np.asarray(value, dtype=np.float32).ravel())
    chosen, wins = {}, {label: 0 for label in candidates}
    for name in names:
        x = np.concatenate(values[name]) if values[name] else np.zeros(1, np.float32)
        x = x[np.isfinite(x)]
        scored = []
        for label, ranges in candidates.items():
            low, high = ranges[name].range_value
            scored.append((fake_quant_cosine(x, float(max(abs(low), abs(high)))), label))
        label = max(scored)[1]
        wins[label] += 1
        low, high = candidates[label][name].range_value
        chosen[name] = TensorData(lowest=np.asarray(low, np.float32), highest=np.asarray(high, np.float32))
    return TensorsData(CalibrationMethod.MinMax, chosen), wins


def _with_all_outputs(model: onnx.ModelProto, names: Iterable[str]) -> bytes:
    """The model serialized with `names` added as float graph outputs (for per-node comparison)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    for name in names:
        if name not in existing:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return copy.SerializeToString()


def _plain_session(model: bytes) -> ort.InferenceSession:
    """No graph optimizations: QDQ stays simulated and every intermediate tensor keeps its name."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def float_outputs(model: onnx.ModelProto) -> List[Tuple[str, str, str]]:
    """(node name, op type, output tensor) for every float output of a compute node."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    return [
        (node.name, node.op_type, out)
        for node in model.graph.node
        if node.op_type not in ("Constant", "Identity")
        for out in node.output[:1]
        if types.get(out) == onnx.TensorProto.FLOAT
    ]


def node_cosines(float_model: Path, quant_model: Path, samples: Sequence[Mapping[str, np.ndarray]],
                 quantized: Set[str]) -> List[dict]:
    """Cosine similarity of every node's output, float vs quantized, over `samples` (the value the next
    node sees: after Quantize/Dequantize where the emulation quantized it). Entries that are not
    finite in both (masked attention scores are -inf) are left out."""
    base = onnx.load(str(float_model))
    quant = onnx.load(str(quant_model))
    nodes = float_outputs(base)
    quant_tensors = {o for n in quant.graph.node for o in n.output}
    seen = {out: (f"{out}_DequantizeLinear_Output" if f"{out}_DequantizeLinear_Output" in quant_tensors else out)
            for _, _, out in nodes}
    missing = [out for out, name in seen.items() if name not in quant_tensors]
    if missing:
        raise EdgeAsrError(f"{quant_model}: tensor {missing[0]} of the float model is not in the quantized one")
    float_session = _plain_session(_with_all_outputs(base, seen))
    quant_session = _plain_session(_with_all_outputs(quant, seen.values()))
    float_names = [o.name for o in float_session.get_outputs()]
    quant_names = [o.name for o in quant_session.get_outputs()]
    pooled = {out: PooledCosine() for out in seen}
    for sample in samples:
        f = dict(zip(float_names, float_session.run(None, dict(sample))))
        q = dict(zip(quant_names, quant_session.run(None, dict(sample))))
        for out, name in seen.items():
            pooled[out].add(f[out], q[name])
    return [{"node": node, "op": op, "int8": node in quantized, "cosine": round(pooled[out].value(), 6)}
            for node, op, out in nodes]


def output_cosine(float_model: Path, quant_model: Path, sample: Mapping[str, np.ndarray]) -> float:
    """Cosine of the first graph output, float vs quantized, on one sample."""
    a = _plain_session(onnx.load(str(float_model)).SerializeToString()).run(None, dict(sample))[0]
    b = _plain_session(onnx.load(str(quant_model)).SerializeToString()).run(None, dict(sample))[0]
    pooled = PooledCosine()
    pooled.add(a, b)
    return pooled.value()


def candidate_label(kind: str, percentile: float) -> str:
    return kind if percentile >= 1.0 else f"max_percentile_{percentile}"


def calibrate(model: Path, samples: Sequence[Mapping[str, np.ndarray]], bpu_nodes: Sequence[str],
              calibration_type: str, max_percentile: float, per_channel: bool,
              scratch: Path) -> Tuple[TensorsData, Dict[str, object]]:
    """Ranges with hb_mapper's calibration_type semantics; returns them and what was chosen and why.

    default: max, max with percentile 0.99995 and kl each quantize the whole graph; the one whose
    output cosine on the first sample is best is kept. mix: the same candidates, chosen per tensor
    (`mix_ranges`). onnxruntime's histogram calibrators refuse a near-constant tensor ("Too many bins
    for data range"): under default and mix that candidate is reported and skipped; asked for by
    name, it is an error."""
    op_types = node_op_types(model, bpu_nodes)
    if calibration_type not in ("default", "mix"):
        try:
            ranges = tensor_ranges(model, samples, op_types, calibration_type, max_percentile)
        except ValueError as exc:
            raise EdgeAsrError(f"bpu.calibration_type={calibration_type}: onnxruntime's calibrator failed "
                               f"({exc}); try max") from exc
        return ranges, {"calibration": calibration_type, "max_percentile": max_percentile}
    candidates: Dict[str, TensorsData] = {}
    tried: Dict[str, object] = {}
    for kind, percentile in DEFAULT_CANDIDATES:
        label = candidate_label(kind, percentile)
        try:
            candidates[label] = tensor_ranges(model, samples, op_types, kind, percentile)
        except ValueError as exc:
            tried[label] = f"failed: {exc}"
    if not candidates:
        raise EdgeAsrError(f"{model}: every calibration candidate failed: {tried}")
    if calibration_type == "mix":
        ranges, wins = mix_ranges(model, samples[:MIX_SAMPLES], candidates)
        return ranges, {"calibration": "mix", "tensors_per_candidate": wins, **({"failed": tried} if tried else {})}
    for label, ranges in candidates.items():
        trial = write_qdq(model, ranges, bpu_nodes, per_channel, scratch / f"{model.stem}.{label}.onnx")
        tried[label] = round(output_cosine(model, trial, samples[0]), 6)
        trial.unlink()
    best = max((score, label) for label, score in tried.items() if isinstance(score, float))[1]
    return candidates[best], {"calibration": "default", "selected": best, "output_cosine_first_sample": tried}
