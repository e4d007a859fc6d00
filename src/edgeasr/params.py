"""Stage parameters: read params.yaml, keep only the keys the stage declares in dvc.yaml.

Stages never compose Hydra config themselves (they would ignore `dvc exp run -S`); params.yaml is
the composed config. The returned config is read-only and in struct mode, so reading a key the
stage did not declare fails loudly instead of silently escaping DVC's change tracking.

`python -m edgeasr.params [overrides...]` regenerates params.yaml from conf/ with DVC's own
compose function (what `dvc exp run -S` does).
"""

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, List, Sequence, Type, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import EdgeAsrError

T = TypeVar("T")


def declared_params(dvc_yaml: Path, stage: str) -> List[str]:
    """The params.yaml keys that `stage` lists under `params:` in dvc.yaml."""
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    if stage not in stages:
        raise EdgeAsrError(f"{dvc_yaml}: no stage {stage!r}")
    keys: List[str] = []
    for entry in stages[stage].get("params", []):
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):
            for file, file_keys in entry.items():
                if Path(file).name != "params.yaml":
                    raise EdgeAsrError(f"{dvc_yaml}: stage {stage}: params from {file} are not supported")
                keys.extend(file_keys or [])
    return keys


def _parse_override(arg: str) -> tuple:
    if "=" not in arg:
        raise EdgeAsrError(f"argument {arg!r}: expected key=value")
    key, raw = arg.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw else ""


def select_params(params: DictConfig, keys: Sequence[str], source: str) -> DictConfig:
    """A new config holding only `keys` of `params`; a key must exist and be set (not ???)."""
    picked = OmegaConf.create({})
    for key in keys:
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(params, parent_key) if parent_key else params
        if not isinstance(parent, DictConfig) or leaf not in parent.keys():  # `in` is False for ???
            raise EdgeAsrError(f"{source}: key {key!r} is declared by the stage but not present")
        if OmegaConf.is_missing(parent, leaf):
            raise EdgeAsrError(f"{source}: {key} is not set (pass -S {key}=... or {key}=... by hand)")
        OmegaConf.update(picked, key, parent[leaf], force_add=True)
    return picked


def load_stage_params(stage: str, argv: Sequence[str] = (), root: Path = Path(".")) -> DictConfig:
    """Declared params of `stage`, with `key=value` overrides for runs by hand (declared keys only)."""
    params_path = root / "params.yaml"
    if not params_path.is_file():
        raise EdgeAsrError(f"{params_path}: not found (run from the project root)")
    keys = declared_params(root / "dvc.yaml", stage)
    params = OmegaConf.load(params_path)
    for arg in argv:
        key, value = _parse_override(arg)
        if not any(key == k or key.startswith(k + ".") for k in keys):
            raise EdgeAsrError(f"override {key!r}: stage {stage} does not declare it (declared: {', '.join(keys)})")
        OmegaConf.update(params, key, value, force_add=True)
    cfg = select_params(params, keys, str(params_path))
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def check_streaming(streaming: DictConfig) -> None:
    """The streaming geometry every streaming stage shares: a chunk of > 0 encoder frames (full
    context is reported beside every streaming result, never under its name); left chunks -1
    (unlimited, where a family supports it) or >= 0."""
    chunk, left = streaming.chunk_size, streaming.num_decoding_left_chunks
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk <= 0:
        raise EdgeAsrError(f"streaming.chunk_size: must be an integer > 0 (encoder frames per chunk), got {chunk!r}")
    if not isinstance(left, int) or isinstance(left, bool) or left < -1:
        raise EdgeAsrError(f"streaming.num_decoding_left_chunks: must be an integer >= -1 (-1 = unlimited), "
                           f"got {left!r}")


def to_dict(cfg: DictConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def dataclass_from(cls: Type[T], section: DictConfig) -> T:
    """A config dataclass from the params section holding its fields (lists become tuples)."""
    values = {f.name: section[f.name] for f in fields(cls) if f.name in section}
    return cls(**{k: tuple(v) if isinstance(v, ListConfig) else v for k, v in values.items()})


def compose(output: Path, overrides: Sequence[str], conf_dir: Path = Path("conf")) -> None:
    """params.yaml = compose(conf/ + overrides), exactly as `dvc exp run -S` writes it."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(output, str(conf_dir.resolve()), None, "config", str(conf_dir.resolve()), list(overrides))


if __name__ == "__main__":
    compose(Path("params.yaml"), sys.argv[1:])
