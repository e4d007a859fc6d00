"""The artifact manifest: what a stage that produces artifacts hands to every stage that evaluates them.

Each artifact folder (exp/export, exp/bpu, exp/compile, exp/rknn) holds one `artifacts.json`:

    {"stage": "export",
     "artifacts": {"cpu": {"backend": "onnx_cpu", "files": {"encoder": "cpu/encoder.onnx", ...},
                           "context": "streaming", "modes": [...], "frames_align": true,
                           "produced_by": "...", "tolerance": {...}, "parity": {...}, ...}, ...},
     "skipped": {"gpu_streaming": "why it was not produced"},
     "info": {...}}                                   # stage facts a report repeats (compile's mode)

`files` are relative to the manifest's folder (`../bpu/encoder.onnx` reaches a sibling), so a
folder can be copied or shipped to a worker whole. An artifact that exists but cannot run here
(hb_mapper's `.bin`) has `runnable: false` and a `reason`. Readers never spell a file name or
test a file's presence: they open what the manifest lists (`evaluate.backends.open_backend`).
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from ..cli import read_json
from ..errors import EdgeAsrError

MANIFEST = "artifacts.json"
BACKENDS = ("torch", "onnx_cpu", "onnx_gpu", "sherpa_onnx", "x3_onnx", "rknn_simulator", "x3_bin")
CONTEXTS = ("streaming", "full")
CTC_MODES = ("ctc_greedy", "ctc_prefix_beam")  # what a graph without an attention decoder decodes
ALL_MODES = CTC_MODES + ("attention_rescoring",)


@dataclass(frozen=True)
class Artifact:
    """One runnable (or listed but not runnable) artifact family of a manifest."""

    backend: str  # one of BACKENDS: which runtime opens `files`
    files: Mapping[str, str]  # role (encoder, ctc, decoder, model, ...) -> path relative to the manifest folder
    context: str  # "streaming" (at the exported chunk) or "full"
    modes: Tuple[str, ...]  # decoding modes it supports (intersected with compare.modes when evaluated)
    frames_align: bool  # its CTC frames match PyTorch's one to one, so log-probs are compared
    produced_by: str  # what made it, said in every report of it (e.g. "emulated INT8 (onnxruntime QDQ)")
    options: Mapping[str, Any] = field(default_factory=dict)  # backend settings (protocol, front end, ...)
    tolerance: Optional[Mapping[str, float]] = None  # export-time parity limits (None: judged by CER)
    parity: Optional[Mapping[str, float]] = None  # measured export-time max |diff| per tensor
    cosine_to: Optional[Mapping[str, str]] = None  # files of the float graphs it is compared with (cosine)
    runnable: bool = True  # False: listed, not evaluated here (`reason` says why)
    reason: Optional[str] = None

    def path(self, folder: Path, role: str) -> Path:
        """The file of `role`, resolved against the manifest's folder; a listed file must exist."""
        if role not in self.files:
            raise EdgeAsrError(f"{folder / MANIFEST}: artifact has no {role!r} file (has: {', '.join(self.files)})")
        path = folder / self.files[role]
        if not path.is_file():
            raise EdgeAsrError(f"{path}: listed in {folder / MANIFEST} but missing (rerun the stage that wrote it)")
        return path


@dataclass(frozen=True)
class Manifest:
    folder: Path
    stage: str
    artifacts: Mapping[str, Artifact]
    skipped: Mapping[str, str]  # family -> why it was not produced
    info: Mapping[str, Any]


def write_manifest(folder: Path, stage: str, artifacts: Mapping[str, Artifact],
                   skipped: Optional[Mapping[str, str]] = None, info: Optional[Mapping[str, Any]] = None) -> Path:
    """folder/artifacts.json; every listed file must exist (checked here, where it was written)."""
    for name, artifact in artifacts.items():
        _check(folder / MANIFEST, name, artifact)
        for role in artifact.files:
            artifact.path(folder, role)
    record = {"stage": stage, "artifacts": {name: _as_json(a) for name, a in artifacts.items()},
              "skipped": dict(skipped or {}), "info": dict(info or {})}
    path = folder / MANIFEST
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an artifact folder; a missing or damaged one is a one-line error naming it."""
    path = folder / MANIFEST
    record = read_json(path, "artifact manifest", folder)
    try:
        artifacts = {name: _from_json(entry) for name, entry in record["artifacts"].items()}
        manifest = Manifest(folder, str(record["stage"]), artifacts, dict(record["skipped"]), dict(record["info"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EdgeAsrError(f"{path}: not a valid artifact manifest ({type(exc).__name__}: {exc})") from None
    for name, artifact in manifest.artifacts.items():
        _check(path, name, artifact)
    return manifest


def _check(path: Path, name: str, artifact: Artifact) -> None:
    if artifact.backend not in BACKENDS:
        raise EdgeAsrError(f"{path}: {name}: backend {artifact.backend!r} (known: {', '.join(BACKENDS)})")
    if artifact.context not in CONTEXTS:
        raise EdgeAsrError(f"{path}: {name}: context {artifact.context!r} (known: {', '.join(CONTEXTS)})")
    unknown = set(artifact.modes) - set(ALL_MODES)
    if unknown:
        raise EdgeAsrError(f"{path}: {name}: unknown decoding modes {sorted(unknown)}")
    if not artifact.runnable and not artifact.reason:
        raise EdgeAsrError(f"{path}: {name}: not runnable, and no reason given")


def _as_json(artifact: Artifact) -> Dict[str, Any]:
    record = asdict(artifact)
    record["files"], record["modes"] = dict(artifact.files), list(artifact.modes)
    return {k: v for k, v in record.items() if v is not None}


def _from_json(entry: Mapping[str, Any]) -> Artifact:
    entry = dict(entry)
    entry["modes"] = tuple(entry["modes"])
    return Artifact(**entry)
