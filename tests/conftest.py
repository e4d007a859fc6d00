"""Tiny random WeNet-style models and model directories, shared by the tests."""

import copy
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch
import yaml

from edgeasr.decode import TorchBackend, stream_encode
from edgeasr.frontend.cmvn import cmvn_stats_json, mean_istd  # the same arithmetic load_cmvn uses
from edgeasr.model import ModelSpec, build_model

VOCAB = 23  # <blank>, <unk>, 20 characters, <sos/eos>

_BASE_DECODER = {
    "decoder": "bitransformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 24, "num_blocks": 1, "r_num_blocks": 1},
}

# The architectures WeNet users actually ship, at toy size.
ARCHITECTURES: Dict[str, Dict[str, Any]] = {
    "conformer_relpos_conv2d_swish_ln": {
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 16, "attention_heads": 2, "linear_units": 24, "num_blocks": 2,
            "input_layer": "conv2d", "pos_enc_layer_type": "rel_pos", "selfattention_layer_type": "rel_selfattn",
            "activation_type": "swish", "cnn_module_norm": "layer_norm", "cnn_module_kernel": 5,
            "causal": True, "use_dynamic_chunk": True,
        },
        **_BASE_DECODER,
    },
    "conformer_nopos_conv2d8_relu_causal_bn": {
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 16, "attention_heads": 2, "linear_units": 24, "num_blocks": 2,
            "input_layer": "conv2d8", "pos_enc_layer_type": "no_pos", "selfattention_layer_type": "selfattn",
            "activation_type": "relu", "cnn_module_norm": "batch_norm", "cnn_module_kernel": 7,
            "causal": True, "use_dynamic_chunk": True,
        },
        **_BASE_DECODER,
    },
    # WeNet's AISHELL recipe: full-context conv module (kernel 15, not causal), rel_pos.
    "conformer_relpos_noncausal_k15": {
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 16, "attention_heads": 2, "linear_units": 24, "num_blocks": 2,
            "input_layer": "conv2d", "pos_enc_layer_type": "rel_pos", "selfattention_layer_type": "rel_selfattn",
            "activation_type": "swish", "cnn_module_kernel": 15, "use_dynamic_chunk": True,
        },
        **_BASE_DECODER,
    },
    "transformer_abspos_conv2d6": {
        "encoder": "transformer",
        "encoder_conf": {
            "output_size": 16, "attention_heads": 2, "linear_units": 24, "num_blocks": 2,
            "input_layer": "conv2d6", "pos_enc_layer_type": "abs_pos", "use_dynamic_chunk": True,
        },
        **_BASE_DECODER,
    },
    "conformer_moe_conv2d8": {
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 16, "attention_heads": 2, "linear_units": 24, "num_blocks": 2,
            "input_layer": "conv2d8", "pos_enc_layer_type": "rel_pos", "activation_type": "gelu",
            "causal": True, "cnn_module_kernel": 3, "use_dynamic_chunk": True,
            "mlp_type": "moe", "n_expert": 4, "n_expert_activated": 2,
        },
        "decoder": "transformer",
        "decoder_conf": {"attention_heads": 2, "linear_units": 24, "num_blocks": 2},
    },
}


# Variants of ARCHITECTURES that one test module builds (registered by name, e.g. by test_bpu.py's
# bpu_arch); kept apart so that the `arch` fixture and loops over ARCHITECTURES never see them.
VARIANTS: Dict[str, Dict[str, Any]] = {}


def run_group(cmd: list, timeout: float, **popen: Any) -> subprocess.CompletedProcess:
    """`cmd` in its own process group, its output captured as text; the whole group is killed at
    `timeout` (the test then fails with the output so far) or when the test is stopped. NOTE: not
    subprocess.run(timeout=...), which kills only the child: what it started (a stage's Dask workers,
    the RK3588 simulator, Chromium's renderers) would outlive the test."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **popen)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"{' '.join(map(str, cmd))} still running after {timeout} s, killed:\n"
                             f"{stdout[-3000:]}\n{stderr[-3000:]}") from None
    finally:
        if proc.poll() is None:  # the test itself was stopped (pytest-timeout, ^C)
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def variant(base: str, **encoder_conf: Any) -> str:
    """Register ARCHITECTURES[base] with encoder_conf overrides; returns its name."""
    name = f"{base}:" + ",".join(f"{k}={v}" for k, v in sorted(encoder_conf.items()))
    conf = copy.deepcopy(ARCHITECTURES[base])
    conf["encoder_conf"].update(encoder_conf)
    VARIANTS[name] = conf
    return name


def train_yaml(arch: str, feat_dim: int = 20) -> Dict[str, Any]:
    conf = copy.deepcopy(ARCHITECTURES[arch] if arch in ARCHITECTURES else VARIANTS[arch])
    conf.update(
        input_dim=feat_dim,
        output_dim=VOCAB,
        cmvn="global_cmvn",
        cmvn_conf={"cmvn_file": "/recipe/data/train/global_cmvn", "is_json_cmvn": True},
        tokenizer="char",
        tokenizer_conf={
            "symbol_table_path": "/recipe/data/dict/units.txt",
            "special_tokens": {"<blank>": 0, "<unk>": 1, "<sos>": VOCAB - 1, "<eos>": VOCAB - 1},
        },
        ctc_conf={"ctc_blank_id": 0},
        model_conf={"ctc_weight": 0.3, "reverse_weight": 0.3 if conf["decoder"] == "bitransformer" else 0.0},
    )
    return conf


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights and BatchNorm statistics, so that no parity test passes by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.1))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def cmvn_json(feat_dim: int, seed: int = 0) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    frames = 1000
    mean = rng.normal(5.0, 2.0, feat_dim)
    var = rng.uniform(1.0, 4.0, feat_dim)
    return {"mean_stat": (mean * frames).tolist(), "var_stat": ((var + mean**2) * frames).tolist(), "frame_num": frames}


def make_model(arch: str, feat_dim: int = 20, seed: int = 0):
    stats = cmvn_json(feat_dim, seed)
    cmvn = mean_istd(stats["mean_stat"], stats["var_stat"], stats["frame_num"])
    model = build_model(ModelSpec(train_yaml(arch, feat_dim), VOCAB), cmvn)
    return randomize_(model, seed)


def write_model_dir(path: Path, arch: str, feat_dim: int = 20, seed: int = 0, with_cmvn_file: bool = True) -> torch.nn.Module:
    """A released-model directory: train.yaml, final.pt, units.txt, global_cmvn."""
    path.mkdir(parents=True, exist_ok=True)
    model = make_model(arch, feat_dim, seed)
    (path / "train.yaml").write_text(yaml.safe_dump(train_yaml(arch, feat_dim)))
    torch.save(model.state_dict(), path / "final.pt")
    units = ["<blank> 0", "<unk> 1"] + [f"{chr(0x4E00 + i)} {i + 2}" for i in range(VOCAB - 3)] + [f"<sos/eos> {VOCAB - 1}"]
    (path / "units.txt").write_text("\n".join(units) + "\n", encoding="utf-8")
    if with_cmvn_file:
        (path / "global_cmvn").write_text(json.dumps(cmvn_json(feat_dim, seed)))
    return model


@pytest.fixture(params=sorted(ARCHITECTURES))
def arch(request) -> str:
    return request.param


@pytest.fixture
def feats() -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randn(1, 173, 20, generator=g) * 2.0 + 5.0


SHARPEN = 10.0  # CTC head weights x this (condition_)


def noise_bursts(rng: np.random.Generator, bursts: int = 8) -> np.ndarray:
    """0.2 s segments of tones and noise at random levels: audio whose features change a lot."""
    t = np.arange(3200) / 16000
    return np.concatenate([rng.uniform(0.001, 0.5) * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
                           + rng.normal(0, rng.uniform(0.001, 0.2), t.size) for _ in range(bursts)]).astype(np.float32)


def condition_(model: torch.nn.Module, feats: list, chunk: int, left: int) -> dict:
    """Make a random model's output depend on its input (a raw random model emits one token for any
    audio): CMVN from these features, unit LayerNorm gains, a CTC head sharpened SHARPEN times and centred on
    the mean encoder frame (streamed at chunk / left). Returns the CMVN statistics, for the model directory's global_cmvn."""
    stats = cmvn_stats_json(feats)
    mean, istd = mean_istd(stats["mean_stat"], stats["var_stat"], stats["frame_num"])
    with torch.no_grad():
        model.encoder.global_cmvn.mean.copy_(torch.from_numpy(mean))
        model.encoder.global_cmvn.istd.copy_(torch.from_numpy(istd))
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
        model.ctc.ctc_lo.weight.mul_(SHARPEN)
        model.ctc.ctc_lo.bias.zero_()
        frames = np.concatenate([stream_encode(TorchBackend(model), f, chunk, left)[0] for f in feats])
        model.ctc.ctc_lo.bias.copy_(-model.ctc.ctc_lo(torch.from_numpy(frames.mean(0))))
    return stats


FAKE_HB_MAPPER = textwrap.dedent('''\
    #!{python}
    """A stand-in for Horizon's hb_mapper: checks its arguments and writes what makertbin writes."""
    import shutil, sys, yaml
    from pathlib import Path
    assert sys.argv[1:4] == ["makertbin", "--model-type", "onnx"] and sys.argv[4] == "--config", sys.argv
    config = yaml.safe_load(open(sys.argv[5]))
    model = config["model_parameters"]
    assert model["march"] == "bernoulli2"
    assert config["calibration_parameters"]["calibration_type"] in ("default", "max", "kl", "mix")
    for folder in config["calibration_parameters"]["cal_data_dir"].split(";"):
        assert any(Path(folder).glob("*.bin")), folder
    out = Path(model["working_dir"]); out.mkdir(parents=True, exist_ok=True)
    prefix = model["output_model_file_prefix"]
    (out / (prefix + ".bin")).write_bytes(b"HBRT")
    shutil.copy(model["onnx_model"], out / (prefix + "_quantized_model.onnx"))
    print("2026-11-22 10:00:00,000 INFO Start to Horizon NN Model Convert.")
    print("2026-11-22 10:00:01,000 INFO " + "Node                     ON   Subgraph  Type              Cosine Similarity  Threshold")
    print("2026-11-22 10:00:01,000 INFO " + "-" * 90)
    print("2026-11-22 10:00:01,000 INFO " + "/embed/conv/conv.0/Conv  BPU  id(0)     HzSQuantizedConv  0.412031           12.5")
    print("2026-11-22 10:00:01,000 INFO " + "/encoders.0/self_attn    CPU  --        Softmax           --                 --")
    print("2026-11-22 10:00:01,000 INFO " + "/ctc_lo/convs.0/Conv     BPU  id(0)     HzSQuantizedConv  0.999871           3.1")
    print("2026-11-22 10:00:02,000 INFO Convert to runtime bin file successfully!")
''')


def install_fake_hb_mapper(bin_dir: Path) -> Path:
    """FAKE_HB_MAPPER as an executable `hb_mapper` in bin_dir (put bin_dir first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / "hb_mapper"
    fake.write_text(FAKE_HB_MAPPER.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake
