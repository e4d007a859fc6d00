"""edgeasr: take a WeNet-style streaming ASR checkpoint to ONNX runtimes and an edge NPU, with numbers.

Layers, lowest first; a module imports only from layers below its own (tests/test_layers.py):

    errors, checks, similarity, what everything may use: the user-error type, setting-value
    paths                       checks, signal similarity, the pipeline's artifact and metrics paths
    cli                         stage entry points: one-line errors, atomic outputs, metrics files
    params | targets            params.yaml loading and validation | the NPU targets a run builds
    frontend                    audio, fbank, CMVN, data lists, tokens, test-set preparation
    model                       WeNet-compatible networks and checkpoint loading
    artifact                    ONNX tracing settings, sessions, the metadata contract
    decode                      backends (torch, onnxruntime, X3 graphs) and searches
    export | bpu                the ONNX families | the X3 rewrite, calibration, compile
    evaluate                    CER, reports, artifact comparisons, the compute engine
    rknn | demo | report | bench  the RK3588 compile, simulator and budget search (rknn-toolkit2 run as a
                                program in its own environment; on evaluate's engine), the embedded
                                corpus and trainer, reports, the benchmarks (speed per
    | bench_scale | bench_moe   backend; the evaluation's scale over Dask workers; dense vs sparse MoE;
    | bench_search              an artifact evaluation's time per decoding phase)
"""

__version__ = "0.1.0"

# The layer of every top-level module and package (see the docstring); lower numbers are lower.
LAYERS = {
    "errors": 0, "checks": 0, "similarity": 0, "paths": 0,
    "cli": 1,
    "params": 2, "targets": 2,
    "frontend": 3,
    "model": 4,
    "artifact": 5,
    "decode": 6,
    "export": 7, "bpu": 7,
    "evaluate": 8,
    "rknn": 9, "demo": 9, "report": 9, "bench": 9, "bench_scale": 9, "bench_moe": 9, "bench_search": 9,
}
