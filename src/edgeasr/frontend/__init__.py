"""Audio in, features out: wav reading and resampling, Kaldi fbank, CMVN statistics, data lists."""

from .audio import SAMPLE_RATE, read_audio
from .cmvn import load_cmvn
from .datalist import Utterance, read_data_list, read_symbol_table, write_data_list
from .fbank import compute_fbank

__all__ = [
    "SAMPLE_RATE",
    "Utterance",
    "compute_fbank",
    "load_cmvn",
    "read_audio",
    "read_data_list",
    "read_symbol_table",
    "write_data_list",
]
