"""Calibration data, hb_mapper configs, the INT8 emulation and the real-toolchain branch (fake hb_mapper)."""

import json
import os
import textwrap

import numpy as np
import onnx
import pytest
import soundfile

from conftest import install_fake_hb_mapper, make_model
from edgeasr.bpu import export_bpu, placement_report, rewrite
from edgeasr.bpu.calibration import build_calibration, select_utterances
from edgeasr.bpu.compile import MODELS, CalibrationSettings, calibrate_graph, compile_all, read_configs, worst_nodes
from edgeasr.bpu.hb_mapper import find_hb_mapper
from edgeasr.bpu.hb_config import build_config, read_config, validate, with_calibration_method, write_config
from edgeasr.bpu.hb_mapper import parse_cosine_table
from edgeasr.bpu.run_on_cpu import resolve_run_on_cpu
from edgeasr.bpu.ranges import tensor_ranges
from edgeasr.errors import EdgeAsrError
from edgeasr.artifact.metadata import read_metadata

CHUNK, LEFT = 4, 2
X3_ARCH = "conformer_nopos_conv2d8_relu_causal_bn"  # WeNet's X3 recipe: inside the contract as it is
FEAT_DIM = 80  # the front end computes 80 bins


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny X3 model (80-dim features), six noise 'utterances' in a data.list, calibration data."""
    root = tmp_path_factory.mktemp("compile")
    model = make_model(X3_ARCH, feat_dim=FEAT_DIM)
    encoder, ctc = rewrite(model, CHUNK, LEFT)
    paths = export_bpu(model, encoder, ctc, root / "bpu")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(6):
        wav = root / f"utt{i}.wav"
        soundfile.write(wav, rng.normal(0, 0.1, 16000 + 2400 * i).astype(np.float32), 16000)
        lines.append(json.dumps({"key": f"utt{i}", "wav": str(wav), "txt": "x"}))
    (root / "cali.list").write_text("\n".join(lines) + "\n")
    manifest = build_calibration(paths["encoder"], paths["ctc"], root / "cali.list", 4, 0, root / "cal")
    return root, paths, manifest


def run_compile(config_dir, cal_dir, out, method):
    """What the compile stage does without a sensitivity study: calibrate when emulating, compile."""
    configs = read_configs(config_dir, method)
    executable = find_hb_mapper()
    graphs = {} if executable else {n: calibrate_graph(n, configs[n], method, cal_dir, out.parent) for n in MODELS}
    return compile_all(configs, graphs, executable, out, 3)


def test_sample_selection_is_seeded_and_checked():
    assert select_utterances(10, 4, 0) == select_utterances(10, 4, 0)
    assert select_utterances(10, 4, 0) != select_utterances(10, 4, 1)
    assert select_utterances(3, 50, 0) == [0, 1, 2]
    with pytest.raises(EdgeAsrError, match="max_samples"):
        select_utterances(10, 0, 0)


def test_calibration_layout_shapes_and_real_caches(setup):
    root, paths, manifest = setup
    assert manifest["utterances_used"] == 4
    shapes = manifest["shapes"]
    encoder_files = {name: sorted((root / "cal" / "encoder" / name).glob("*.bin"))
                     for name in ("chunk", "att_cache", "cnn_cache", "att_mask")}
    assert all(len(files) == 4 for files in encoder_files.values())
    for name, files in encoder_files.items():
        assert [f.name for f in files] == [f.name for f in encoder_files["chunk"]]  # <utt>.<chunk>.bin
        for f in files:
            assert f.stat().st_size == 4 * int(np.prod(shapes[name]))
    # A sample picked after the first chunk carries the caches and mask that the chunks before built.
    later = [f for f in encoder_files["att_cache"] if not f.name.endswith(".0.bin")]
    assert later, "every picked chunk was the first one: use another seed"
    for f in later:
        assert np.abs(np.fromfile(f, np.float32)).max() > 0
        mask = np.fromfile(root / "cal" / "encoder" / "att_mask" / f.name, np.float32).reshape(shapes["att_mask"])
        assert mask[0, 0, 0, :CHUNK * LEFT].sum() > 0
    hidden = list((root / "cal" / "ctc" / "hidden").glob("*.bin"))
    assert len(hidden) == manifest["files_per_input"]["hidden"] > 4  # every chunk of every utterance


def test_calibration_is_byte_identical_and_says_when_short(setup, tmp_path):
    root, paths, manifest = setup
    again = build_calibration(paths["encoder"], paths["ctc"], root / "cali.list", 4, 0, tmp_path / "cal")
    assert again["encoder_samples"] == manifest["encoder_samples"]
    for f in (root / "cal").rglob("*.bin"):
        assert f.read_bytes() == (tmp_path / "cal" / f.relative_to(root / "cal")).read_bytes()
    many = build_calibration(paths["encoder"], paths["ctc"], root / "cali.list", 50, 0, tmp_path / "all")
    assert many["utterances_used"] == 6 and "all are used" in many["note"]


def test_calibration_follows_the_shared_data_policy(setup, tmp_path):
    """Too short for one output frame: skipped and counted; unreadable: stops, naming the list line."""
    root, paths, _ = setup
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(800, np.float32), 16000)  # 0.05 s
    lines = (root / "cali.list").read_text().splitlines()
    listed = tmp_path / "with_short.list"
    listed.write_text("\n".join(lines[:2] + [json.dumps({"key": "short", "wav": str(short), "txt": "x"})]) + "\n")
    manifest = build_calibration(paths["encoder"], paths["ctc"], listed, 50, 0, tmp_path / "cal")
    assert manifest["utterances_used"] == 2 and manifest["data"]["skipped_too_short"] == 1
    broken = tmp_path / "broken.list"
    broken.write_text(lines[0] + "\n" + json.dumps({"key": "gone", "wav": str(tmp_path / "gone.wav"), "txt": "x"}) + "\n")
    with pytest.raises(EdgeAsrError, match=r"broken\.list:2: .*gone\.wav"):
        build_calibration(paths["encoder"], paths["ctc"], broken, 50, 0, tmp_path / "cal2")


def configs(setup, tmp_path, run_on_cpu=()):
    root, paths, _ = setup
    out = {}
    names = resolve_run_on_cpu({name: placement_report(paths[name]) for name in ("encoder", "ctc")}, list(run_on_cpu))
    for name in ("encoder", "ctc"):
        meta = read_metadata(paths[name])
        dirs = [str(root / "cal" / name / n) for n in meta["input_name"].split(";")]
        config = build_config(name, str(paths[name]), meta, dirs, names[name], "bernoulli2",
                              {"compile_mode": "latency", "core_num": 1, "optimize_level": "O3", "debug": False})
        write_config(tmp_path / f"config_{name}.yaml", config)
        out[name] = config
    return out


def test_config_has_the_four_sections_from_metadata(setup, tmp_path):
    cfg = configs(setup, tmp_path, [{"op": "Conv", "scope": r"^/embed/conv/conv\.0/"}])
    enc = read_config(tmp_path / "config_encoder.yaml")
    assert list(enc) == ["model_parameters", "input_parameters", "calibration_parameters", "compiler_parameters"]
    assert enc["input_parameters"]["input_name"] == "chunk;att_cache;cnn_cache;att_mask"
    assert enc["input_parameters"]["input_type_rt"] == "featuremap;featuremap;featuremap;featuremap"
    run_on_cpu = enc["calibration_parameters"]["run_on_cpu"].split(";")
    assert run_on_cpu[-1] == "/embed/conv/conv.0/Conv"  # the rule's node, after the report's CPU islands
    assert "/encoders.0/norm_ff_macaron/norm/Add" in run_on_cpu  # LayerNorm's `var + eps` stays float
    assert len(enc["calibration_parameters"]["cal_data_dir"].split(";")) == 4
    assert cfg["ctc"]["input_parameters"]["input_shape"] == f"1x{16}x1x{CHUNK}"
    bad = with_calibration_method(enc, "max", 0.9999, False)
    bad["calibration_parameters"]["calibration_type"] = "minmax"
    with pytest.raises(EdgeAsrError, match="calibration_type = 'minmax'"):
        validate(bad, "x")
    with pytest.raises(EdgeAsrError, match="no Conv node matches '\\^/nowhere/' in encoder, ctc"):
        resolve_run_on_cpu({n: placement_report(setup[1][n]) for n in ("encoder", "ctc")},
                           [{"op": "Conv", "scope": "^/nowhere/"}])


def test_kl_really_uses_its_histogram(setup):
    """Entropy with onnxruntime's own defaults equals MinMax; ours must clip somewhere."""
    root, paths, _ = setup
    from edgeasr.bpu.calibration import calibration_folders, read_samples

    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in onnx.load(str(paths["encoder"])).graph.input}
    samples = list(read_samples(calibration_folders(root / "cal", "encoder", list(shapes)), shapes))
    ops = ["Conv", "Add", "Mul"]
    kl = tensor_ranges(paths["encoder"], samples, ops, "kl", 1.0)
    mx = tensor_ranges(paths["encoder"], samples, ops, "max", 1.0)
    clipped = [name for name in mx.data if float(np.max(kl.data[name].range_value)) <
               0.99 * float(np.max(np.abs(mx.data[name].range_value)))]
    assert clipped


def test_entropy_thresholds_are_onnxruntimes(setup):
    """The array search picks onnxruntime's own KL threshold on every tensor, histograms grown
    by merges included (heavy tails, sparse bins, few values, a constant tensor)."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    from edgeasr.bpu.entropy_threshold import entropy_thresholds
    from edgeasr.bpu.ranges import KL_NUM_BINS, KL_QUANTIZED_BINS

    rng = np.random.default_rng(0)
    collector = HistogramCollector("entropy", True, KL_NUM_BINS, KL_QUANTIZED_BINS, 0.0, "same")
    for batch in range(3):  # later batches with wider ranges grow the histograms
        scale = 1.0 + batch
        collector.collect({
            "normal": rng.normal(0, scale, 5000).astype(np.float32),
            "heavy": (rng.standard_t(2, 5000) * scale).astype(np.float32),
            "relu": np.maximum(rng.normal(0.5, scale, 5000), 0).astype(np.float32),
            "sparse": (rng.normal(0, 1, 5000) * (rng.random(5000) < 0.02) * scale).astype(np.float32),
            "constant": np.full(100, 0.25, dtype=np.float32),
            **{f"few{k}": rng.laplace(0, scale, 150 + 40 * k).astype(np.float32) for k in range(8)},
        })
    ours = entropy_thresholds(collector.histogram_dict, KL_QUANTIZED_BINS)
    assert {h[0].size for h in collector.histogram_dict.values()} != {KL_NUM_BINS}
    for name, histogram in collector.histogram_dict.items():
        low, high = collector.get_entropy_threshold(histogram, KL_QUANTIZED_BINS)
        assert (ours[name][0], ours[name][1]) == (low, high), name
    assert float(ours["heavy"][1]) < 0.5 * float(collector.histogram_dict["heavy"][3])  # it clips


def test_emulated_compile_reports_nodes_and_keeps_run_on_cpu_float(setup, tmp_path):
    root, paths, _ = setup
    configs(setup, tmp_path, [{"op": "Conv", "scope": r"^/embed/conv/conv\.0/"}])
    report = run_compile(tmp_path, root / "cal", tmp_path / "out", CalibrationSettings("default", 1.0, False))
    assert report["mode"] == "emulated"
    enc = report["encoder"]
    assert "/embed/conv/conv.0/Conv" in enc["run_on_cpu"]
    assert set(enc["calibration"]["output_cosine_first_sample"]) == {"max", "max_percentile_0.99995", "kl"}
    rows = {r["node"]: r for r in enc["nodes"]}
    assert rows["/embed/conv/conv.0/Conv"]["int8"] is False and rows["/embed/conv/conv.2/Conv"]["int8"] is True
    assert all(0.0 < r["cosine"] <= 1.000001 for r in rows.values())
    quant = onnx.load(str(tmp_path / "out" / "encoder" / "encoder_quantized_model.onnx"))
    conv0 = next(n for n in quant.graph.node if n.name == "/embed/conv/conv.0/Conv")
    assert not any(i.endswith("_DequantizeLinear_Output") for i in conv0.input[1:])  # float weights
    assert len(worst_nodes(enc["nodes"])) == 10


def test_per_channel_emulation_runs_on_the_opset_11_graphs(setup, tmp_path):
    """Per-channel weight scales need opset 13's DequantizeLinear axis: the emulation's copy of the
    opset-11 X3 graphs is converted, and each quantized conv weight gets one scale per output channel."""
    root, _, _ = setup
    configs(setup, tmp_path, [])
    report = run_compile(tmp_path, root / "cal", tmp_path / "out", CalibrationSettings("max", 1.0, True))
    assert all(0.0 < r["cosine"] <= 1.000001 for r in report["encoder"]["nodes"])
    quant = onnx.load(str(tmp_path / "out" / "encoder" / "encoder_quantized_model.onnx"))
    scales = {i.name: i for i in quant.graph.initializer}
    conv2 = next(n for n in quant.graph.node if n.name == "/embed/conv/conv.2/Conv")
    weight_dq = next(n for n in quant.graph.node if n.output[0] == conv2.input[1])
    assert weight_dq.op_type == "DequantizeLinear" and any(a.name == "axis" for a in weight_dq.attribute)
    assert len(onnx.numpy_helper.to_array(scales[weight_dq.input[1]])) > 1


def test_real_branch_runs_hb_mapper_and_parses_its_table(setup, tmp_path, monkeypatch):
    root, _, _ = setup
    bin_dir = tmp_path / "bin"
    install_fake_hb_mapper(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    configs(setup, tmp_path)
    report = run_compile(tmp_path, root / "cal", tmp_path / "out", CalibrationSettings("kl", 1.0, False))
    assert report["mode"] == "compiled"
    for name in ("encoder", "ctc"):
        folder = tmp_path / "out" / name
        assert (folder / f"{name}.bin").read_bytes() == b"HBRT"
        assert (folder / f"{name}_quantized_model.onnx").is_file()
        assert "Convert to runtime bin file successfully" in (folder / "hb_mapper_makertbin.log").read_text()
        assert read_config(folder / "config.yaml")["calibration_parameters"]["calibration_type"] == "kl"
    worst = worst_nodes(report["encoder"]["nodes"])
    assert worst[0] == {"graph": "encoder", "node": "/embed/conv/conv.0/Conv", "op": "HzSQuantizedConv",
                        "device": "BPU", "cosine": 0.412031}
    assert [r["cosine"] for r in report["encoder"]["nodes"]] == [0.412031, None, 0.999871]


def test_cosine_table_parser_takes_pipe_tables_with_extra_columns():
    log = textwrap.dedent("""\
        INFO | Node | ON | Subgraph | Type | Input Type | Cosine Similarity | Threshold |
        INFO |------|----|----------|------|------------|-------------------|-----------|
        INFO | /a/Conv | BPU | id(0) | HzSQuantizedConv | int8 | 0.9981 | 4.2 |
        INFO Convert to runtime bin file successfully!
        """)
    rows = parse_cosine_table(log)
    assert rows == [{"Node": "/a/Conv", "ON": "BPU", "Subgraph": "id(0)", "Type": "HzSQuantizedConv",
                     "Input Type": "int8", "Cosine Similarity": 0.9981, "Threshold": "4.2"}]
    with pytest.raises(EdgeAsrError, match="Cosine Similarity"):
        parse_cosine_table("no table here")


def test_bad_config_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model_parameters: {march: bernoulli2}\n")
    with pytest.raises(EdgeAsrError, match=f"{path}: missing section input_parameters"):
        read_config(path)
