"""Calibration for the emulated X3 INT8: activation ranges with hb_mapper's calibration_type
semantics, computed by onnxruntime's calibrators. The types map as:

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
(`bpu.quantize.write_qdq`).
"""

import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import TensorData, TensorsData, create_calibrator

from ..errors import EdgeAsrError
from ..similarity import PooledCosine
from .entropy_threshold import entropy_thresholds
from .quantize import node_op_types, output_cosine, plain_session, with_all_outputs, write_qdq

KL_NUM_BINS, KL_QUANTIZED_BINS = 512, 128  # finer than the quantized grid, so KL can clip; the
# threshold search costs ~ bins^2 per tensor (entropy_threshold), 512 keeps it ~16x cheaper than 2048
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
        if method == CalibrationMethod.Entropy:  # onnxruntime's search, without its Python loops
            return TensorsData(method, entropy_thresholds(calibrator.collector.histogram_dict, KL_QUANTIZED_BINS))
        return calibrator.compute_data()


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
    session = plain_session(with_all_outputs(proto, names))
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
