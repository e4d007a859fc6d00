"""The artifact manifest: what a stage that produces artifacts hands to every stage that evaluates them.

Each artifact folder (exp/export, exp/bpu, exp/compile, exp/rknn_export, exp/rknn) holds one `artifacts.json`:

    {"stage": "export",
     "artifacts": {"cpu": {"backend": "onnx_cpu", "files": {"encoder": "cpu/encoder.onnx", ...},
                           "context": "streaming", "modes": [...], "frames_align": true,
                           "produced_by": "...", "tolerance": {...}, "parity": {...}, ...}, ...},
     "skipped": {"gpu_streaming": "why it was not produced"},
     "info": {...},                                   # stage facts a report repeats (compile's mode)
     "digests": {"cpu/encoder.onnx": {"bytes": ..., "sha256": ...}, ...}}

`files` are relative to the manifest's folder (`../bpu/encoder.onnx` reaches a sibling), so a
folder can be copied or shipped to a worker whole. An artifact that exists but cannot run here
(hb_mapper's `.bin`) has `runnable: false` and a `reason`. Readers never spell a file name or
test a file's presence: they open what the manifest lists (`evaluate.backends.open_backend`).
`digests` holds the size and SHA-256 of every file the artifacts list, taken where they were
written; `read_manifest` checks them, so a truncated or corrupted file (a copy that stopped, a disk
that filled) is a one-line error naming it before any runtime reads it.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..cli import read_json
from ..errors import EdgeAsrError

MANIFEST = "artifacts.json"
BACKENDS = ("torch", "onnx_cpu", "onnx_gpu", "sherpa_onnx", "x3_onnx", "fixed_cache_onnx", "rknn_simulator", "x3_bin")
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


def listed_files(artifacts: Mapping[str, Artifact]) -> List[str]:
    """Every file the artifacts name (their files and the float graphs they are compared with),
    relative to the manifest's folder, once each."""
    names = {rel for a in artifacts.values() for rel in list(a.files.values()) + list((a.cosine_to or {}).values())}
    return sorted(names)


def file_digest(path: Path) -> Dict[str, Any]:
    """{"bytes": size, "sha256": hex digest} of a file."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}


def write_manifest(folder: Path, stage: str, artifacts: Mapping[str, Artifact],
                   skipped: Optional[Mapping[str, str]] = None, info: Optional[Mapping[str, Any]] = None) -> Path:
    """folder/artifacts.json; every listed file must exist (checked here, where it was written), and
    its size and digest are recorded."""
    for name, artifact in artifacts.items():
        _check(folder / MANIFEST, name, artifact)
        for role in artifact.files:
            artifact.path(folder, role)
    record = {"stage": stage, "artifacts": {name: _as_json(a) for name, a in artifacts.items()},
              "skipped": dict(skipped or {}), "info": dict(info or {}),
              "digests": {rel: file_digest(folder / rel) for rel in listed_files(artifacts)}}
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
    _check_digests(path, manifest, record.get("digests"))
    return manifest


def _check_digests(path: Path, manifest: Manifest, digests: Any) -> None:
    """Every listed file is the one its stage wrote: same size, same SHA-256."""
    if not isinstance(digests, dict):
        raise EdgeAsrError(f"{path}: no file digests (written by an older edgeasr): "
                           f"rerun dvc repro -f -s {manifest.stage}")
    for rel in listed_files(manifest.artifacts):
        file = manifest.folder / rel
        recorded = digests.get(rel)
        if not isinstance(recorded, dict) or not {"bytes", "sha256"} <= set(recorded):
            raise EdgeAsrError(f"{path}: no digest for {rel}: rerun dvc repro -f -s {manifest.stage}")
        if not file.is_file():
            raise EdgeAsrError(f"{file}: listed in {path} but missing: rerun dvc repro -f -s {manifest.stage}")
        found = file_digest(file)
        if found["bytes"] != recorded["bytes"]:
            raise EdgeAsrError(f"{file}: {found['bytes']} bytes, {manifest.stage} wrote {recorded['bytes']} "
                               f"(truncated: a copy that stopped or a full disk?): "
                               f"rerun dvc repro -f -s {manifest.stage}")
        if found["sha256"] != recorded["sha256"]:
            raise EdgeAsrError(f"{file}: its content is not what {manifest.stage} wrote (SHA-256 differs: "
                               f"damaged or replaced): rerun dvc repro -f -s {manifest.stage}")


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
