"""The sweep report: every experiment's chunk settings against CER, CER − PyTorch and speed, grouped so
that only comparable points share a chart.

    python -m edgeasr.report.sweep [-o metrics/sweep.html] [--set test]

reads `dvc exp show --json` (the workspace, commits and queued/finished experiments). Points are
grouped by what makes them comparable (`comparable_group`): the model's content (the hash DVC
recorded for `model.dir`), the test set, the number of utterances decoded and the decoding settings
(`compare.*`). Each group gets its own grid, titled with what it holds: a heatmap of CER − PyTorch per
artifact over chunk × left chunks, one of PyTorch's CER, and CER against chunk size per artifact and
left-chunk setting. Below them the worst quantized nodes of the workspace (1 − cosine on a log axis,
full names in a table) and the INT8 sensitivity by layer group. Charts are rendered to SVG by
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
from ..evaluate.summary import ARTIFACT_METRICS, MODE
from ..paths import INT8_SENSITIVITY_TABLE, QUANT_METRICS, SWEEP_REPORT, TORCH_METRICS

ARTIFACTS = {  # artifact -> (metrics file, path to its streaming family inside a test set)
    "pytorch": (str(TORCH_METRICS), ("streaming",)),
    **{label: (str(path), (entry,)) for label, (path, entry) in ARTIFACT_METRICS.items()},
}
DECODING_KEYS = ("beam_size", "ctc_weight", "reverse_weight")  # compare.* that change a hypothesis
VEGA = "https://vega.github.io/schema/vega-lite/v5.json"  # the spec's schema id, never fetched
LABEL_CHARS = 48  # node labels on the worst-node chart (full names in the table under it)


def _records(entries: List[dict], baseline: Optional[str] = None) -> Iterator[dict]:
    """Every row of `dvc exp show --json` that carries data: commits and their experiments, each
    with the commit it was run on (`baseline`)."""
    for entry in entries:
        rev = entry.get("rev")
        base = baseline or str(rev)
        if entry.get("data"):
            yield {"rev": rev, "name": entry.get("name"), "baseline": base, **entry["data"]}
        for experiment in entry.get("experiments") or []:
            yield from _records(experiment.get("revs") or [], base)


def _metric(record: Mapping, path: str) -> Optional[dict]:
    return ((record.get("metrics") or {}).get(path) or {}).get("data")


def comparable_group(record: Mapping, params: Mapping, test_set: str) -> Optional[Dict[str, object]]:
    """What a point of `record` is comparable on: the model (name, dir, content hash DVC recorded for
    the dir, else the commit), the test set, utterances decoded, decoding settings; None without a
    PyTorch reference on `test_set`."""
    reference = (_metric(record, str(TORCH_METRICS)) or {}).get(test_set)
    if not reference:
        return None
    model = params.get("model") or {}
    model_dir = str(model.get("dir", "?"))
    content = ((record.get("deps") or {}).get(model_dir) or {}).get("hash")
    compare = params.get("compare") or {}
    return {"model": str(model.get("name", "?")), "model_dir": model_dir,
            "model_version": f"content {content[:8]}" if content else f"commit {str(record['baseline'])[:7]}",
            "test_set": test_set, "utterances": reference.get("utterances"),
            "decoding": ", ".join(f"{k} {compare.get(k)}" for k in DECODING_KEYS if k in compare)}


def group_title(group: Mapping[str, object]) -> str:
    return (f"model {group['model']} ({group['model_dir']}, {group['model_version']}) · test set "
            f"{group['test_set']}, {group['utterances']} utterances · {group['decoding'] or 'default decoding'}")


def experiment_points(exp_show: List[dict], test_set: str) -> List[Dict[str, object]]:
    """One point per (experiment, artifact): chunk, left chunks, CER, CER − PyTorch, RTF, ms per chunk,
    and the title of its comparable group (`group`)."""
    points, seen = [], set()
    for record in _records(exp_show):
        params = ((record.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        streaming = params.get("streaming") or {}
        group = comparable_group(record, params, test_set)
        if "chunk_size" not in streaming or group is None:
            continue
        rev = str(record["rev"])
        name = record["name"] or (rev if rev == "workspace" else rev[:7])
        for artifact, (path, keys) in ARTIFACTS.items():
            family = (_metric(record, path) or {}).get(test_set)
            for key in keys:
                family = (family or {}).get(key)
            if not family or MODE not in family or (name, artifact) in seen:
                continue
            seen.add((name, artifact))
            points.append({
                "experiment": name,
                "group": group_title(group),
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
    """The workspace's worst quantized nodes, from metrics/quant.json (`dvc exp show` drops lists):
    full name, a label for the chart (the name, its head cut when longer than LABEL_CHARS), cosine and
    1 − cosine (4 significant digits)."""
    if not quant_metrics.is_file():
        return []
    nodes = json.loads(quant_metrics.read_text()).get("worst_nodes", [])
    rows = []
    for n in nodes[:count]:
        name = f"{n['graph']}:{n['node'].lstrip('/')}"
        label = name if len(name) <= LABEL_CHARS else "…" + name[-(LABEL_CHARS - 1):]
        rows.append({"node": name, "label": label, "cosine": n["cosine"],
                     "one_minus_cosine": float(f"{max(1.0 - n['cosine'], 1e-9):.4g}")})
    return rows


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
        "$schema": VEGA, "title": title, "width": 360, "height": 220,
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


def heatmap(points: List[dict], field: str, title: str) -> dict:
    """`field` over chunk size × left chunks, the value written in each cell."""
    cell = {"x": {"field": "chunk_size", "type": "ordinal", "title": "chunk size (encoder frames)"},
            "y": {"field": "left_chunks", "type": "ordinal", "title": "left chunks", "sort": "descending"}}
    return {
        "$schema": VEGA, "title": title, "width": 40 * len({p["chunk_size"] for p in points}) + 40,
        "height": 30 * len({p["left_chunks"] for p in points}) + 20,
        "data": {"values": points},
        "layer": [
            {"mark": "rect", "encoding": {**cell, "color": {"field": field, "type": "quantitative", "title": field},
                                          "tooltip": [{"field": f} for f in ("experiment", "chunk_size",
                                                                             "left_chunks", field)]}},
            {"mark": {"type": "text", "fontSize": 10},
             "encoding": {**cell, "text": {"field": field, "type": "quantitative", "format": ".2f"}}},
        ],
    }


def worst_nodes_chart(nodes: List[dict]) -> dict:
    """1 − cosine of the worst quantized nodes on a log axis: the differences that matter are visible."""
    return {
        "$schema": VEGA,
        "title": "1 − cosine, float vs INT8 (worst nodes; full names below)", "width": 360,
        "height": 22 * max(len(nodes), 1),
        "data": {"values": nodes},
        # NOTE: points, not bars: a bar on a log axis has no zero to start from.
        "mark": {"type": "circle", "size": 90},
        "encoding": {
            "y": {"field": "label", "type": "nominal", "sort": "-x", "title": None, "axis": {"labelLimit": 360}},
            "x": {"field": "one_minus_cosine", "type": "quantitative", "scale": {"type": "log"},
                  "title": "1 − cosine (log)"},
            "tooltip": [{"field": "node"}, {"field": "cosine"}],
        },
    }


def sensitivity_chart(rows: List[dict]) -> dict:
    """CER − PyTorch on the dev utterances with one layer group quantized at a time."""
    return {
        "$schema": VEGA,
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


def group_charts(points: List[dict], test_set: str) -> List[dict]:
    """One comparable group's grid: CER − PyTorch per artifact, PyTorch's CER, CER against chunk size."""
    artifacts = [a for a in ARTIFACTS if a != "pytorch" and any(p["artifact"] == a for p in points)]
    charts = [heatmap([p for p in points if p["artifact"] == a], "cer_delta", f"{a}: CER − PyTorch (points)")
              for a in artifacts]
    charts.append(heatmap([p for p in points if p["artifact"] == "pytorch"], "cer", "PyTorch: CER %"))
    charts.append(line_chart(points, "cer", f"CER % ({test_set}, streaming, CTC greedy)"))
    return charts


def _svg(spec: dict) -> str:
    return f'<div class="chart">{vl_convert.vegalite_to_svg(spec)}</div>'


def _table(rows: List[dict], columns: List[str]) -> str:
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def groups_of(points: List[dict]) -> Dict[str, List[dict]]:
    """Points by comparable group, in the order the groups first appear."""
    groups: Dict[str, List[dict]] = {}
    for point in points:
        groups.setdefault(str(point["group"]), []).append(point)
    return groups


def render(points: List[dict], nodes: List[dict], test_set: str, sensitivity: List[dict] = ()) -> str:
    """A self-contained HTML page: one section of inline SVG charts per comparable group, the worst
    nodes and the sensitivity table of the workspace, and every point."""
    if not points:
        raise EdgeAsrError("no experiment has streaming metrics yet: run `dvc repro` or a sweep first")
    sections = []
    for title, members in groups_of(points).items():
        svgs = "\n".join(_svg(spec) for spec in group_charts(members, test_set))
        experiments = len({p["experiment"] for p in members})
        sections.append(f'<section class="group"><h2>{html.escape(title)}</h2><p>{experiments} experiments</p>'
                        f"{svgs}</section>")
    workspace = []
    if nodes:
        workspace.append(_svg(worst_nodes_chart(nodes)) + _table(nodes, ["node", "cosine", "one_minus_cosine"]))
    if sensitivity:
        workspace.append(_svg(sensitivity_chart(list(sensitivity))))
    columns = ["group", "experiment", "chunk_size", "left_chunks", "artifact", "cer", "cer_delta", "rtf",
               "chunk_audio_ms", "chunk_compute_ms"]
    ordered = sorted(points, key=lambda p: (p["group"], p["chunk_size"], p["left_chunks"], p["artifact"]))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgeasr sweep</title>"
            "<style>body{font-family:sans-serif;margin:2em}.chart{display:inline-block;margin:1em;vertical-align:top}"
            "section{border-top:2px solid #888;margin-top:1.5em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>"
            f"</head><body><h1>edgeasr sweep: {html.escape(test_set)}</h1>"
            "<p>Points share a chart only when they are comparable: same model content, test set, number of "
            "utterances and decoding settings.</p>" + "".join(sections) +
            ('<section class="workspace"><h2>the workspace: INT8 worst nodes and sensitivity</h2>'
             + "".join(workspace) + "</section>" if workspace else "") +
            f"<h2>every point</h2>{_table(ordered, columns)}</body></html>\n")


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
