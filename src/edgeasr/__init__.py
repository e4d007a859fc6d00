"""edgeasr: take a WeNet-style streaming ASR checkpoint to a Horizon X3 BPU, with numbers."""

__version__ = "0.1.0"
