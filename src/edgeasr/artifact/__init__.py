"""ONNX artifacts, below every package that writes or runs them (export, bpu, decode): tracing with
the shared settings, sessions, and the metadata contract every file carries and every reader checks."""
