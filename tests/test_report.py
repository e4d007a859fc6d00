"""The sweep report from `dvc exp show --json` rows; it must render offline (inline SVG, no scripts)."""

import html
import json
import re
import shutil

import pytest

from conftest import run_group
from edgeasr.evaluate.summary import summary_rows
from edgeasr.paths import BPU_METRICS, ONNX_METRICS, QUANT_METRICS, RKNN_METRICS
from edgeasr.report.sweep import experiment_points, groups_of, read_worst_nodes, render, sensitivity_rows


def family(cer: float, delta: float = 0.0) -> dict:
    return {"ctc_greedy": {"cer": cer, "cer_delta": delta}, "rtf": 0.01, "chunk_compute_ms": 2.5, "chunk_audio_ms": 80}


def record(rev: str, name, chunk: int, left: int, cer: float, model: str = "demo", utts: int = 300,
           content: str = "aaaaaaaa11") -> dict:
    torch = family(cer)
    metrics = {
        "metrics/torch.json": {"test": {"streaming": torch, "utterances": utts}},
        "metrics/onnx.json": {"test": {"cpu": family(cer)}},
        "metrics/bpu.json": {"test": {"bpu_float": family(cer)}},
        "metrics/quant.json": {"test": {"quantized": family(cer + 0.5, 0.5)}},  # dvc exp show drops list values
    }
    params = {"streaming": {"chunk_size": chunk, "num_decoding_left_chunks": left},
              "model": {"name": model, "dir": f"models/{model}"},
              "compare": {"beam_size": 10, "ctc_weight": 0.5, "reverse_weight": 0.3, "max_utts": 0}}
    return {"rev": rev, "name": name, "error": None, "experiments": None, "data": {
        "rev": rev, "params": {"params.yaml": {"data": params}},
        "deps": {f"models/{model}": {"hash": content, "size": 1, "nfiles": 4}},
        "metrics": {path: {"data": data} for path, data in metrics.items()}}}


def exp_show() -> list:
    """The workspace, HEAD, a 2x2 sweep queued on HEAD (the shape dvc 3 prints), an experiment on the
    first 100 utterances and one on another model: three comparable groups."""
    head = record("abc1234", "main", 8, 16, 60.0)
    head["experiments"] = [{"revs": [record(f"e{i}", f"exp-{i}", c, l, 70.0 - 2 * c)]}
                           for i, (c, l) in enumerate([(4, 4), (4, 8), (16, 4), (16, 8)])]
    head["experiments"].append({"revs": [record("e5", "loose-tamp", 8, 16, 41.0, utts=100)]})
    head["experiments"].append({"revs": [record("e6", "moe-run", 8, 16, 50.0, model="demo_moe", content="bbbb")]})
    return [record("workspace", None, 8, 16, 60.0), head]


def test_points_cover_every_experiment_and_artifact():
    points = experiment_points(exp_show(), "test")
    assert len(points) == 8 * 4  # workspace, HEAD and six experiments; four artifacts each
    quantized = [p for p in points if p["artifact"] == "quantized" and p["experiment"] == "exp-0"]
    assert quantized == [{"experiment": "exp-0", "artifact": "quantized", "chunk_size": 4, "left_chunks": 4,
                          "cer": 62.5, "cer_delta": 0.5, "rtf": 0.01, "chunk_compute_ms": 2.5, "chunk_audio_ms": 80,
                          "group": "model demo (models/demo, content aaaaaaaa) · test set test, 300 utterances · "
                                   "beam_size 10, ctc_weight 0.5, reverse_weight 0.3"}]


def test_points_of_another_model_or_utterance_count_are_never_in_one_group():
    groups = groups_of(experiment_points(exp_show(), "test"))
    assert len(groups) == 3
    members = {title: {p["experiment"] for p in points} for title, points in groups.items()}
    assert {"workspace", "main", "exp-0", "exp-1", "exp-2", "exp-3"} in members.values()
    assert {"loose-tamp"} in members.values() and {"moe-run"} in members.values()
    assert any("100 utterances" in title for title in groups) and any("demo_moe" in title for title in groups)
    # the same model at another commit (no content hash recorded) is a group of its own too
    other = exp_show()
    del other[0]["data"]["deps"]
    assert len(groups_of(experiment_points(other, "test"))) == 4


@pytest.fixture(scope="module")
def quant_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / "quant.json"
    path.write_text(json.dumps({"worst_nodes": [{"graph": "encoder", "node": "/embed/conv/conv.0/Conv",
                                                 "cosine": 0.41}]}))
    return path


def test_worst_nodes_come_from_the_workspace_file(quant_json, tmp_path):
    assert read_worst_nodes(quant_json) == [{"node": "encoder:embed/conv/conv.0/Conv", "label": "encoder:embed/conv/conv.0/Conv",
                                             "cosine": 0.41, "one_minus_cosine": 0.59}]
    assert read_worst_nodes(tmp_path / "missing.json") == []


@pytest.fixture(scope="module")
def sensitivity_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / "int8_sensitivity.csv"
    path.write_text("group,graph,int8_nodes,macs_per_chunk,cer,cer_delta,cosine_encoder_out,cosine_log_probs\n"
                    "encoders.1.feed_forward,encoder,3,3072,30.5,28.25,0.85,0.89\n"
                    "ctc,ctc,1,87552,2.3,0.05,1.0,0.9999\n")
    return path


def test_sensitivity_rows_come_from_the_workspace_table(sensitivity_csv, tmp_path):
    rows = sensitivity_rows(sensitivity_csv)
    assert [(r["group"], r["cer_delta"]) for r in rows] == [("encoders.1.feed_forward", 28.25), ("ctc", 0.05)]
    assert sensitivity_rows(tmp_path / "missing.csv") == []


@pytest.fixture(scope="module")
def page(tmp_path_factory, quant_json, sensitivity_csv):
    html = render(experiment_points(exp_show(), "test"), read_worst_nodes(quant_json), "test",
                  sensitivity_rows(sensitivity_csv))
    path = tmp_path_factory.mktemp("report") / "sweep.html"
    path.write_text(html, encoding="utf-8")
    return path


def test_report_is_self_contained(page):
    text = page.read_text()
    assert text.count('<section class="group">') == 3
    assert text.count("<svg") == 3 * 5 + 2 and "<script" not in text  # + worst nodes, sensitivity
    assert "http" not in text.replace("http://www.w3.org", "").replace("https://vega.github.io/schema", "")
    assert "exp-3" in text and "quantized" in text and "encoders.1.feed_forward" in text
    assert "encoder:embed/conv/conv.0/Conv" in text  # the full node name, in the table


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_report_renders_in_headless_chromium(page, tmp_path):
    """Chromium offline (no network flags) builds the page's DOM: one section of charts per comparable
    group, each titled with its model and utterance count, and every chart's SVG."""
    proc = run_group(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()], 120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sections = re.findall(r'<section class="group"><h2>([^<]*)</h2>(.*?)</section>', proc.stdout, flags=re.S)
    assert len(sections) == 3
    titles = [html.unescape(title) for title, _ in sections]
    assert sum("100 utterances" in t for t in titles) == 1 and sum("model demo_moe" in t for t in titles) == 1
    assert all(body.count("<svg") == 5 for _, body in sections)
    assert "1 − cosine (log)" in proc.stdout and "chunk size (encoder frames)" in proc.stdout


def test_summary_rows_put_artifacts_side_by_side():
    torch = {"test": {"streaming": family(60.0)}}
    rknn = family(62.0, 2.0)
    del rknn["rtf"]  # the simulator's speed is not the chip's
    evaluations = {ONNX_METRICS: {"test": {"cpu": family(60.0)}}, BPU_METRICS: {"test": {"bpu_float": family(60.0)}},
                   QUANT_METRICS: {"mode": "emulated", "test": {"quantized": family(61.0, 1.0)}},
                   RKNN_METRICS: {"target": "rk3588", "test": {"rk3588_float": family(60.0), "rk3588_int8": rknn}}}
    rows = summary_rows(torch, evaluations, 8, 16)
    assert [r["artifact"] for r in rows] == ["pytorch", "onnx_cpu", "bpu_float", "quantized", "rk3588_float",
                                             "rk3588_int8"]
    assert rows[3]["cer_delta"] == 1.0 and rows[0]["label"] == "test/pytorch" and rows[-1]["rtf"] is None
    # a target not chosen: its stages wrote a note, and it has no rows
    evaluations.update({BPU_METRICS: {"note": "off"}, QUANT_METRICS: {"note": "off"}, RKNN_METRICS: {"note": "off"}})
    assert [r["artifact"] for r in summary_rows(torch, evaluations, 8, 16)] == ["pytorch", "onnx_cpu"]
