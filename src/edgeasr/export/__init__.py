"""ONNX exporters (cpu streaming, gpu batched, sherpa-onnx), their metadata and parity checks."""
