"""The sweep report: every experiment's chunk settings against CER, real-time factor and latency.

    python -m edgeasr.report.sweep [-o metrics/sweep.html] [--set test]

reads `dvc exp show --json` (the workspace, commits and queued/finished experiments), draws
CER and real-time factor against chunk size, one line per artifact and left-chunk setting, and the
per-node cosine of the quantized graph (worst nodes) and the INT8 sensitivity by layer group
(CER − PyTorch with one group quantized, metrics/int8_sensitivity.csv) as bars. Charts are rendered to SVG by
vl-convert and inlined, so the page needs no network (DVC's own HTML pulls vega from a CDN).
"""

import argparse
import csv
import html
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional

import vl_convert

from ..errors import EdgeAsrError
from ..paths import BPU_METRICS, INT8_SENSITIVITY_TABLE, ONNX_METRICS, QUANT_METRICS, SWEEP_REPORT, TORCH_METRICS

ARTIFACTS = {  # artifact -> (metrics file, path to its streaming family inside a test set)
    "pytorch": (str(TORCH_METRICS), ("streaming",)),
    "onnx_cpu": (str(ONNX_METRICS), ("cpu",)),
    "bpu_float": (str(BPU_METRICS), ("bpu_float",)),
    "quantized": (str(QUANT_METRICS), ("quantized",)),
}
MODE = "ctc_greedy"


def _records(entries: List[dict]) -> Iterator[dict]:
    """Every row of `dvc exp show --json` that carries data: commits and their experiments."""
    for entry in entries:
        if entry.get("data"):
            yield {"rev": entry.get("rev"), "name": entry.get("name"), **entry["data"]}
        for experiment in entry.get("experiments") or []:
            yield from _records(experiment.get("revs") or [])


def _metric(record: Mapping, path: str) -> Optional[dict]:
    return ((record.get("metrics") or {}).get(path) or {}).get("data")


def experiment_points(exp_show: List[dict], test_set: str) -> List[Dict[str, object]]:
    """One point per (experiment, artifact): chunk, left chunks, CER, CER - PyTorch, RTF, ms per chunk."""
    points, seen = [], set()
    for record in _records(exp_show):
        params = ((record.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        streaming = params.get("streaming") or {}
        if "chunk_size" not in streaming:
            continue
        rev = str(record["rev"])
        name = record["name"] or (rev if rev == "workspace" else rev[:7])
        for artifact, (path, keys) in ARTIFACTS.items():
            data = _metric(record, path)
            family = (data or {}).get(test_set)
            for key in keys:
                family = (family or {}).get(key)
            if not family or MODE not in family:
                continue
            key = (name, artifact)
            if key in seen:
                continue
            seen.add(key)
            points.append({
                "experiment": name,
                "artifact": artifact,
                "chunk_size": streaming["chunk_size"],
                "left_chunks": streaming["num_decoding_left_chunks"],
                "cer": family[MODE]["cer"],
                "cer_delta": family[MODE].get("cer_delta", 0.0),
                "rtf": family.get("rtf"),
                "chunk_compute_ms": family.get("chunk_compute_ms"),
                "chunk_audio_ms": family.get("chunk_audio_ms"),
            })
    return points


def read_worst_nodes(quant_metrics: Path, count: int = 10) -> List[dict]:
    """The workspace's worst quantized nodes, from metrics/quant.json (`dvc exp show` drops lists)."""
    if not quant_metrics.is_file():
        return []
    nodes = json.loads(quant_metrics.read_text()).get("worst_nodes", [])
    return [{"node": f"{n['graph']}:{n['node']}", "cosine": n["cosine"]} for n in nodes[:count]]


def sensitivity_rows(table: Path) -> List[dict]:
    """The workspace's INT8 sensitivity table (metrics/int8_sensitivity.csv), most sensitive first."""
    if not table.is_file():
        return []
    with open(table, newline="", encoding="utf-8") as f:
        return [{"group": r["group"], "graph": r["graph"], "cer_delta": float(r["cer_delta"]),
                 "cosine_log_probs": float(r["cosine_log_probs"])} for r in csv.DictReader(f)]


def line_chart(points: List[dict], field: str, title: str) -> dict:
    """`field` against chunk size; color = artifact, dash = left chunks (one line per pair)."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title, "width": 420, "height": 260,
        "data": {"values": points},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "chunk_size", "type": "quantitative", "title": "chunk size (encoder frames)",
                  "scale": {"type": "log", "base": 2}},
            "y": {"field": field, "type": "quantitative", "title": title},
            "color": {"field": "artifact", "type": "nominal"},
            "strokeDash": {"field": "left_chunks", "type": "ordinal", "title": "left chunks"},
            "detail": [{"field": "artifact"}, {"field": "left_chunks"}],
            "tooltip": [{"field": f} for f in ("experiment", "artifact", "chunk_size", "left_chunks", field)],
        },
    }


def bar_chart(nodes: List[dict]) -> dict:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "cosine similarity, float vs INT8 (worst nodes)", "width": 420, "height": 22 * max(len(nodes), 1),
        "data": {"values": nodes},
        "mark": "bar",
        "encoding": {
            "y": {"field": "node", "type": "nominal", "sort": "x", "title": None},
            "x": {"field": "cosine", "type": "quantitative", "scale": {"zero": False}},
        },
    }


def sensitivity_chart(rows: List[dict]) -> dict:
    """CER − PyTorch on the dev utterances with one layer group quantized at a time."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "INT8 sensitivity: CER − PyTorch (dev) with only this group quantized",
        "width": 420, "height": 14 * max(len(rows), 1),
        "data": {"values": rows},
        "mark": "bar",
        "encoding": {
            "y": {"field": "group", "type": "nominal", "sort": "-x", "title": None},
            "x": {"field": "cer_delta", "type": "quantitative", "title": "CER − PyTorch (points)"},
            "color": {"field": "graph", "type": "nominal"},
            "tooltip": [{"field": f} for f in ("group", "graph", "cer_delta", "cosine_log_probs")],
        },
    }


def render(points: List[dict], nodes: List[dict], test_set: str, sensitivity: List[dict] = ()) -> str:
    """A self-contained HTML page: inline SVG charts and the table of points."""
    if not points:
        raise EdgeAsrError("no experiment has streaming metrics yet: run `dvc repro` or a sweep first")
    charts = [line_chart(points, "cer", f"CER % ({test_set}, streaming, CTC greedy)"),
              line_chart(points, "rtf", "real-time factor (1 thread)"),
              line_chart(points, "chunk_compute_ms", "compute per chunk (ms)")]
    if nodes:
        charts.append(bar_chart(nodes))
    if sensitivity:
        charts.append(sensitivity_chart(list(sensitivity)))
    svgs = "\n".join(f'<div class="chart">{vl_convert.vegalite_to_svg(spec)}</div>' for spec in charts)
    columns = ["experiment", "chunk_size", "left_chunks", "artifact", "cer", "cer_delta", "rtf", "chunk_audio_ms",
               "chunk_compute_ms"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(p.get(c)))}</td>" for c in columns) + "</tr>"
                   for p in sorted(points, key=lambda p: (p["chunk_size"], p["left_chunks"], p["artifact"])))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgeasr sweep</title>"
            "<style>body{font-family:sans-serif;margin:2em}.chart{display:inline-block;margin:1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>"
            f"</head><body><h1>edgeasr sweep: {html.escape(test_set)}</h1>{svgs}"
            f"<h2>every point</h2><table><tr>{head}</tr>{body}</table></body></html>\n")


def dvc_exp_show() -> List[dict]:
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Render the chunk-size sweep report (self-contained HTML).")
    parser.add_argument("-o", "--output", type=Path, default=SWEEP_REPORT)
    parser.add_argument("--set", default="test", help="test set to plot")
    args = parser.parse_args(argv)
    exp_show = dvc_exp_show()
    page = render(experiment_points(exp_show, args.set), read_worst_nodes(QUANT_METRICS), args.set,
                  sensitivity_rows(INT8_SENSITIVITY_TABLE))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page, encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
