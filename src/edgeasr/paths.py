"""Every artifact and metrics path of the pipeline, named once (relative to a workspace root).

Stages, the benchmark and the reports take their paths from here; tests/test_paths.py checks them
against the `outs` and `metrics` of dvc.yaml, which declares the same paths for DVC.
"""

from pathlib import Path

DEMO_CORPUS = Path("data/demo")  # synth
RELEASE_CORPORA = Path("data/release")  # edgeasr.demo.release: training corpora, one per seed and size
TRAINED_MODEL = Path("exp/trained_model")  # train
EVAL_TORCH = Path("exp/eval_torch")  # eval_torch: the PyTorch reference (hypotheses, CTC log-probs)
DEV_REFERENCE = Path("exp/dev_reference")  # dev_reference: the reference on compile's dev utterances
EXPORT = Path("exp/export")  # export: cpu/, gpu/offline|streaming/, sherpa/
EXPORT_CPU = EXPORT / "cpu"
EXPORT_GPU = EXPORT / "gpu"
EXPORT_SHERPA = EXPORT / "sherpa"
BPU = Path("exp/bpu")  # export_bpu: the X3 float graphs
CALIBRATION = Path("exp/calibration")  # calibrate
BPU_CONFIG = Path("exp/bpu_config")  # bpu_config
COMPILE = Path("exp/compile")  # compile: quantized graphs (emulated) or .bin + logs (hb_mapper)
RKNN_EXPORT = Path("exp/rknn_export")  # export_rknn: the RK3588's static fixed-cache graph
RKNN = Path("exp/rknn")  # compile_rknn: .rknn files, dataset lists, build logs, accuracy analyses
RKNN_SIMULATION = Path("exp/rknn_simulation")  # eval_rknn: each simulating process's job and log
HYPS = Path("exp/hyps")  # per-utterance hypotheses of every evaluated artifact: <stage>/<set>/<artifact>.jsonl
ONNX_HYPS = HYPS / "onnx"  # eval_onnx
BPU_HYPS = HYPS / "bpu"  # eval_bpu
QUANT_HYPS = HYPS / "quant"  # eval_quant
RKNN_HYPS = HYPS / "rknn"  # eval_rknn

METRICS = Path("metrics")
TRAIN_METRICS = METRICS / "train.json"
TORCH_METRICS = METRICS / "torch.json"
EXPORT_METRICS = METRICS / "export.json"
ONNX_METRICS = METRICS / "onnx.json"
BPU_EXPORT_METRICS = METRICS / "bpu_export.json"
BPU_OPS_METRICS = METRICS / "bpu_ops.json"
BPU_OPS_TABLE = METRICS / "bpu_ops.csv"
BPU_METRICS = METRICS / "bpu.json"
COMPILE_METRICS = METRICS / "compile.json"
QUANT_NODES_TABLE = METRICS / "quant_nodes.csv"
INT8_SENSITIVITY_TABLE = METRICS / "int8_sensitivity.csv"
QUANT_METRICS = METRICS / "quant.json"
RKNN_EXPORT_METRICS = METRICS / "rknn_export.json"
RKNN_COMPILE_METRICS = METRICS / "rknn_compile.json"
RKNN_LAYERS_TABLE = METRICS / "rknn_layers.csv"
RKNN_OPS_TABLE = METRICS / "rknn_ops.csv"
RKNN_METRICS = METRICS / "rknn.json"
SUMMARY_TABLE = METRICS / "summary.csv"
SUMMARY_METRICS = METRICS / "summary.json"  # summary: the NPU targets this run built
WORST_NODES_TABLE = METRICS / "worst_nodes.csv"
SWEEP_REPORT = METRICS / "sweep.html"
