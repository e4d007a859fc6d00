"""Kaldi fbank with WeNet's inference settings, through kaldi-native-fbank.

80 bins, 25 ms / 10 ms, povey window, dither 0, preemphasis 0.97, DC removal, snip_edges,
low 20 Hz, high = Nyquist, 512-point FFT, log floor FLT_EPSILON, no energy; samples scaled to the
int16 range as WeNet does (x * 32768).
"""

import kaldi_native_fbank as knf
import numpy as np

from .audio import SAMPLE_RATE

NUM_MEL_BINS = 80
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
LOW_FREQ_HZ = 20.0
HIGH_FREQ_HZ = 0.0  # 0 = Nyquist (Kaldi's convention; sherpa-onnx's default is -400, i.e. Nyquist - 400 Hz)
SNIP_EDGES = True  # sherpa-onnx's default is false


def wenet_dataset_conf(num_mel_bins: int = NUM_MEL_BINS) -> dict:
    """train.yaml's `dataset_conf` for these features, in WeNet's keys (read by WeNet's tools, e.g.
    runtime/gpu/scripts/convert.py for the Triton feature extractor)."""
    return {
        "fbank_conf": {"num_mel_bins": num_mel_bins, "frame_shift": int(FRAME_SHIFT_MS),
                       "frame_length": int(FRAME_LENGTH_MS), "dither": 0.0},
        "resample_conf": {"resample_rate": SAMPLE_RATE},
    }


def fbank_options(num_mel_bins: int = NUM_MEL_BINS) -> knf.FbankOptions:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.frame_length_ms = FRAME_LENGTH_MS
    opts.frame_opts.frame_shift_ms = FRAME_SHIFT_MS
    opts.frame_opts.dither = 0.0
    opts.frame_opts.preemph_coeff = 0.97
    opts.frame_opts.remove_dc_offset = True
    opts.frame_opts.window_type = "povey"
    opts.frame_opts.snip_edges = SNIP_EDGES
    opts.mel_opts.num_bins = num_mel_bins
    opts.mel_opts.low_freq = LOW_FREQ_HZ
    opts.mel_opts.high_freq = HIGH_FREQ_HZ
    opts.use_energy = False
    opts.energy_floor = 0.0
    return opts


def sherpa_feature_settings(num_mel_bins: int = NUM_MEL_BINS) -> dict:
    """These settings under the names of sherpa-onnx's FeatureExtractorConfig (what a WeNet model needs
    there; sherpa-onnx's own defaults differ in high_freq and snip_edges)."""
    return {"sampling_rate": SAMPLE_RATE, "feature_dim": num_mel_bins, "low_freq": LOW_FREQ_HZ,
            "high_freq": HIGH_FREQ_HZ, "dither": 0.0, "snip_edges": SNIP_EDGES}


def compute_fbank(samples: np.ndarray, num_mel_bins: int = NUM_MEL_BINS) -> np.ndarray:
    """(N,) float32 in [-1, 1] at 16 kHz -> (T, num_mel_bins) float32, T = 1 + (N - 400) // 160."""
    fbank = knf.OnlineFbank(fbank_options(num_mel_bins))
    fbank.accept_waveform(SAMPLE_RATE, (samples * 32768.0).astype(np.float32).tolist())
    fbank.input_finished()
    n = fbank.num_frames_ready
    if n == 0:
        return np.zeros((0, num_mel_bins), dtype=np.float32)
    return np.stack([np.asarray(fbank.get_frame(i), dtype=np.float32) for i in range(n)])
