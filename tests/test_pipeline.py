"""Tier 2: the real dvc.yaml, conf/ and stages/ in a temporary git + DVC repository with the tiny
preset; each param change must rerun exactly the stages that read it (whole runs and faults:
tests/test_pipeline_runs.py)."""

import csv
import json
import re
import shutil

import pytest
import yaml

from conftest import install_fake_hb_mapper
from edgeasr.params import compose
from pipeline_repo import ALL, BASE, DVC_REPRO, X3, make_repo, run, stages_run

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory)


def test_first_run_writes_metrics(repo):
    """torch.json has every set, context and mode; exports were checked; onnx.json compares each family."""
    metrics = json.loads((repo / "metrics" / "torch.json").read_text())
    assert set(metrics) == {"test", "test_unseen_voice"}
    modes = {"ctc_greedy", "ctc_prefix_beam", "attention_rescoring", "rtf"}
    assert set(metrics["test"]["full"]) == modes
    streaming = metrics["test"]["streaming"]
    # a warning only if the briefly trained model's tokens come out over a chunk late streamed
    assert set(streaming) - {"warning"} == modes | {"chunk_audio_ms", "chunk_compute_ms", "emission_delay_ms"}
    assert ("warning" in streaming) == ((streaming["emission_delay_ms"] or 0) > streaming["chunk_audio_ms"])
    assert metrics["test"]["utterances"] == 6
    assert (repo / "exp" / "eval_torch" / "test.jsonl").is_file()
    # PyTorch is decoded once per test set and context (eval_torch), and once on the dev split
    # (dev_reference); no artifact stage decodes it again.
    decodes = re.findall(r"reference decoded: (\S+), (\S+),", (repo / "first_repro.log").read_text())
    assert sorted(decodes) == sorted([(s, c) for s in ("test", "test_unseen_voice") for c in ("streaming", "full")]
                                     + [("dev", "streaming")])
    assert {"train.yaml", "final.pt", "units.txt", "global_cmvn"} <= {p.name for p in (repo / "exp/trained_model").iterdir()}
    onnx_metrics = json.loads((repo / "metrics" / "onnx.json").read_text())
    assert set(onnx_metrics["test"]) == {"cpu", "cpu_int8", "gpu_streaming", "gpu_offline", "sherpa",
                                         "sherpa_default_frontend"}
    assert (repo / "exp" / "hyps" / "onnx" / "test" / "cpu.jsonl").is_file()
    manifest = json.loads((repo / "exp" / "export" / "artifacts.json").read_text())
    assert manifest["artifacts"]["cpu"]["files"]["encoder"] == "cpu/encoder.onnx"
    assert manifest["artifacts"]["cpu"]["parity"]["encoder_out"] <= manifest["artifacts"]["cpu"]["tolerance"]["encoder_out"]
    for family in ("cpu", "gpu_streaming", "gpu_offline"):
        assert onnx_metrics["test"][family]["ctc_greedy"]["cer_delta"] == 0.0
    export = json.loads((repo / "metrics" / "export.json").read_text())
    assert export["cpu"]["encoder_out"] < 1e-4
    tiny = yaml.safe_load((repo / "params.yaml").read_text())["streaming"]
    for family, folder in (("cpu", "cpu"), ("cpu_int8", "cpu_int8")):  # WeNet's runtime needs both flags
        assert (f"decoder_main --onnx_dir exp/export/{folder} --unit_path exp/trained_model/units.txt "
                f"--chunk_size {tiny['chunk_size']} --num_left_chunks {tiny['num_decoding_left_chunks']} ") in \
            export["wenet_decoder_main"][family]
    bpu = json.loads((repo / "metrics" / "bpu.json").read_text())
    for name in ("test", "test_unseen_voice"):
        assert bpu[name]["bpu_float"]["ctc_greedy"]["cer_delta"] == 0.0
        assert bpu[name]["bpu_float"]["ctc_prefix_beam"]["identical"] == 1.0
    assert json.loads((repo / "metrics" / "bpu_ops.json").read_text())["encoder"]["cpu_unexpected"] == 0
    quant = json.loads((repo / "metrics" / "quant.json").read_text())
    assert quant["mode"] == "emulated" and len(quant["worst_nodes"]) == 10
    assert set(quant["test"]["quantized"]) >= {"ctc_greedy", "ctc_prefix_beam", "cosine_encoder_out", "rtf"}
    assert (repo / "exp" / "bpu_config" / "config_encoder.yaml").is_file()
    compiled = json.loads((repo / "metrics" / "compile.json").read_text())
    assert compiled["sensitivity"]["dev_utterances"] == 4  # the tiny corpus's dev split
    with open(repo / "metrics" / "int8_sensitivity.csv", newline="") as f:
        groups = [row["group"] for row in csv.DictReader(f)]
    assert {"embed", "ctc", "encoders.0.feed_forward"} <= set(groups)
    assert compiled["sensitivity"]["evaluations"] == len(groups)


def test_second_repro_runs_nothing(repo):
    assert stages_run(run(DVC_REPRO, repo)) == set()


@pytest.mark.parametrize(
    "override,expected",
    [
        # the reference and everything scored against it
        ("compare.max_utts=3", {"eval_torch", "eval_onnx", "eval_bpu", "eval_quant", "eval_rknn", "summary"}),
        # the gpu graphs hold the top-K and the rescoring weights
        ("compare.ctc_weight=0.4", {"eval_torch", "export", "eval_onnx", "eval_bpu", "eval_quant", "eval_rknn",
                                    "summary"}),
        # the RK3588's stages write their note again (compile_rknn: dev_reference, its budget search's
        # reference, is a dep)
        ("streaming.chunk_size=4", {"eval_torch", "dev_reference", "export", "eval_onnx", "summary"} | X3
         | {"export_rknn", "compile_rknn", "eval_rknn"}),
        ("streaming.num_decoding_left_chunks=2", {"eval_torch", "dev_reference", "export", "eval_onnx", "summary"}
         | X3 | {"export_rknn", "compile_rknn", "eval_rknn"}),
        # the study's dev reference and its table; the quantized graphs are the same files
        ("bpu.sensitivity_utts=2", {"dev_reference", "compile", "compile_rknn"}),
        ("export.opset=14", {"export", "eval_onnx", "summary"}),
        ("bpu.layer_norm_on_bpu=true", X3 | {"summary"}),
        ("calibrate.max_samples=2", {"calibrate", "compile", "eval_quant", "compile_rknn", "summary"}),
        ("bpu.calibration_type=kl", {"compile", "eval_quant", "summary"}),
        # A budget reruns compile; what follows only when the chosen float set changes the graphs
        # (a budget of 100 points is met by all INT8, so the quantized models are the same files).
        ("bpu.max_cer_delta=100", {"compile"}),
        ("bpu.float_islands=false", {"bpu_config", "compile", "eval_quant", "summary"}),
        ("bpu.run_on_cpu=[{op:Conv,scope:'^/embed/conv/conv\\.0/'}]",
         {"bpu_config", "compile", "eval_quant", "summary"}),
        ("model=demo_moe", ALL - {"synth"}),
        ("data.synth.seed=7", ALL),
    ],
)
def test_param_change_reruns_exactly(repo, tmp_path, override, expected):
    """In a copy of the base repository (no restore needed). `summary` follows every artifact
    evaluation, since each one's metrics hold a measured real-time factor."""
    work = tmp_path / "repo"
    shutil.copytree(repo, work, symlinks=True)
    compose(work / "params.yaml", BASE + [override], work / "conf")
    assert stages_run(run(DVC_REPRO, work)) == expected


def test_with_hb_mapper_on_path_the_pipeline_completes(repo, tmp_path):
    """The X3's own toolchain (a stand-in hb_mapper on PATH): compile runs it, the .bin files are listed
    as not runnable here, and hb_mapper's quantized ONNX is what eval_quant scores, labelled so."""
    work = tmp_path / "repo"
    shutil.copytree(repo, work, symlinks=True)
    bin_dir = tmp_path / "bin"
    install_fake_hb_mapper(bin_dir)
    assert stages_run(run(DVC_REPRO + ["-f", "-s", "compile"], work, str(bin_dir))) == {"compile"}
    assert stages_run(run(DVC_REPRO, work, str(bin_dir))) == {"eval_quant", "summary"}
    quant = json.loads((work / "metrics" / "quant.json").read_text())
    assert quant["mode"] == "compiled" and "hb_mapper" in quant["produced_by"]["quantized"]
    assert "board" in quant["not_evaluated"]["x3_bin"]
    # the stand-in's "quantized" model is the float graph: it decodes exactly as the float graphs do
    bpu = json.loads((work / "metrics" / "bpu.json").read_text())
    assert quant["test"]["quantized"]["ctc_greedy"] == bpu["test"]["bpu_float"]["ctc_greedy"]


def test_the_rk3588_path_is_off_by_default(repo):
    note = json.loads((repo / "metrics" / "rknn.json").read_text())["note"]
    assert note == "npu.rk3588=false: eval_rknn is off (rk3588 not chosen; -S npu=rk3588 builds it)"
    assert [p.name for p in (repo / "exp" / "rknn").iterdir()] == ["README.txt"]
    assert not (repo / "metrics" / "rknn.log").exists()  # logs live in exp/, declared
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert summary["npu"] == "x3" and summary["targets"]["x3"].startswith("built")
    assert summary["targets"]["rk3588"].startswith("not built: npu.rk3588=false")
