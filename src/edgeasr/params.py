"""Stage parameters: read params.yaml, keep only the keys the stage declares in dvc.yaml.

Stages never compose Hydra config themselves (they would ignore `dvc exp run -S`); params.yaml is
the composed config. The returned config is read-only and in struct mode, so reading a key the
stage did not declare fails loudly instead of silently escaping DVC's change tracking.

`python -m edgeasr.params [overrides...]` regenerates params.yaml from conf/ with DVC's own
compose function (what `dvc exp run -S` does).
"""

from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple, Type, TypeVar

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


def missing_keys(cfg: DictConfig, prefix: str = "") -> List[str]:
    """Every key left at ??? (a mandatory value of a config group, e.g. model=wenet's model.dir)."""
    out = []
    for key in cfg.keys():
        if OmegaConf.is_missing(cfg, key):
            out.append(f"{prefix}{key}")
        elif isinstance(cfg[key], DictConfig):
            out.extend(missing_keys(cfg[key], f"{prefix}{key}."))
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_at_least(lo: int) -> Tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= lo), f"an integer >= {lo}"


def _number_in(lo: float, hi: float) -> Tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_number(v) and lo <= v <= hi), f"a number in [{lo}, {hi}]"


_BOOL = ((lambda v: isinstance(v, bool)), "true or false")
_DECODING_MODES = ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring")  # decode.recognizer.MODES
_SEARCH_RULES = {
    "modes": ((lambda v: isinstance(v, (list, ListConfig)) and len(v) > 0 and set(v) <= set(_DECODING_MODES)),
              f"a non-empty list of {', '.join(_DECODING_MODES)}"),
    "beam_size": _int_at_least(1),
    "ctc_weight": _number_in(0.0, 1e9),
    "reverse_weight": _number_in(0.0, 1.0),
    "max_utts": _int_at_least(0),
    "threads": _int_at_least(1),
}
# Every param whose value a stage relies on: checked when the stage starts, before any work.
RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "streaming.chunk_size": _int_at_least(1),
    "streaming.num_decoding_left_chunks": _int_at_least(-1),
    **{f"compare.{k}": rule for k, rule in _SEARCH_RULES.items()},
    "export.opset": ((lambda v: _is_int(v) and 11 <= v <= 20), "an integer in [11, 20]"),
    "export.parity_utts": _int_at_least(1),
    "export.moe_form": ((lambda v: v in ("sparse", "dense")), "sparse or dense"),
    "calibrate.max_samples": _int_at_least(1),
    "calibrate.seed": _int_at_least(0),
    "bpu.layer_norm_on_bpu": _BOOL,
    "bpu.float_islands": _BOOL,
    "bpu.per_channel": _BOOL,
    "bpu.calibration_type": ((lambda v: v in ("default", "mix", "kl", "max", "load", "skip")),
                             "one of default, mix, kl, max, load, skip (hb_mapper's)"),
    "bpu.max_percentile": ((lambda v: _is_number(v) and 0.0 < v <= 1.0), "a number in (0, 1]"),
    "bpu.cosine_samples": _int_at_least(1),
    "bpu.sensitivity_utts": _int_at_least(0),
    "bpu.max_cer_delta": ((lambda v: v is None or (_is_number(v) and v >= 0)), "null or a number >= 0"),
    "rknn.sensitivity_utts": _int_at_least(0),
    "rknn.max_cer_delta": ((lambda v: v is None or (_is_number(v) and v >= 0)), "null or a number >= 0"),
    "model.train.time_budget_s": _number_in(0.0, 1e9),
    "model.train.threads": _int_at_least(1),
    "model.train.batch_frames": _int_at_least(1),
    "model.train.full_context_prob": _number_in(0.0, 1.0),
    "model.train.min_chunk": _int_at_least(1),
    "model.train.max_chunk": _int_at_least(1),
    "model.train.late_emission_bonus": _number_in(0.0, 10.0),
    "model.train.late_emission_until_frame": _int_at_least(0),
    "model.train.max_leading_silence_ms": _number_in(0.0, 60000.0),
    "model.train.decoder_only_share": ((lambda v: _is_number(v) and 0.0 <= v < 1.0), "a number in [0, 1)"),
    "model.train.frozen_norm_share": ((lambda v: _is_number(v) and 0.0 <= v <= 1.0), "a number in [0, 1]"),
    "data.synth.num_train": _int_at_least(1),
    "npu.x3": _BOOL,
    "npu.rk3588": _BOOL,
    "compute.workers": _int_at_least(0),
    "compute.shard_utts": _int_at_least(1),
}
# Sections that no stage declares, read by `load_section`: they cannot change any output.
UNDECLARED_SECTIONS = ("compute",)


def check_values(cfg: DictConfig, source: str) -> None:
    """Every present key with a rule in RULES holds an allowed value; one line naming key and value."""
    absent = object()
    for key, (ok, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is absent:
            continue  # the stage does not read this key
        if not ok(value):
            raise EdgeAsrError(f"{source}: {key}={value!r}: must be {allowed}")


def check_known(params: DictConfig, key: str, source: str) -> None:
    """An override names a key params.yaml has (data.test_sets holds free names: any key there)."""
    parent_key, _, leaf = key.rpartition(".")
    if parent_key == "data.test_sets":
        return
    parent = OmegaConf.select(params, parent_key) if parent_key else params
    if not isinstance(parent, DictConfig) or leaf not in parent:
        known = ", ".join(sorted(parent.keys())) if isinstance(parent, DictConfig) else "none"
        raise EdgeAsrError(f"override {key!r}: no such key in {source} ({parent_key or 'top level'} has: {known})")


def load_stage_params(stage: str, argv: Sequence[str] = (), root: Path = Path(".")) -> DictConfig:
    """Declared params of `stage`, with `key=value` overrides for runs by hand (declared keys only)."""
    params_path = root / "params.yaml"
    if not params_path.is_file():
        raise EdgeAsrError(f"{params_path}: not found (run from the project root)")
    keys = declared_params(root / "dvc.yaml", stage)
    params = OmegaConf.load(params_path)
    # NOTE: checked by every stage, read or not: dvc.yaml paths are templated from params
    # (${model.dir}), and DVC would fail on a `???` path only when it reaches the first stage that
    # depends on it, after the stages before it ran (95 s of synthesis with -S model=wenet).
    missing = missing_keys(params)
    if missing:
        raise EdgeAsrError(f"{params_path}: {', '.join(missing)} not set (pass -S {missing[0]}=... to dvc exp run, "
                           f"or {missing[0]}=... to python -m edgeasr.params)")
    for arg in argv:
        key, value = _parse_override(arg)
        if not any(key == k or key.startswith(k + ".") for k in keys):
            raise EdgeAsrError(f"override {key!r}: stage {stage} does not declare it (declared: {', '.join(keys)})")
        check_known(params, key, str(params_path))
        OmegaConf.update(params, key, value, force_add=True)
    cfg = select_params(params, keys, str(params_path))
    check_values(cfg, str(params_path))
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def load_section(name: str, root: Path = Path(".")) -> DictConfig:
    """A section of params.yaml that no stage declares (UNDECLARED_SECTIONS: where work runs, never what
    it computes), checked by RULES; absent from an older params.yaml, it is the empty config."""
    if name not in UNDECLARED_SECTIONS:
        raise EdgeAsrError(f"params section {name!r} is not an undeclared one ({', '.join(UNDECLARED_SECTIONS)})")
    params_path = root / "params.yaml"
    if not params_path.is_file():
        raise EdgeAsrError(f"{params_path}: not found (run from the project root)")
    params = OmegaConf.load(params_path)
    section = params.get(name) or OmegaConf.create({})
    check_values(OmegaConf.create({name: section}), str(params_path))
    OmegaConf.set_readonly(section, True)
    return section


def check_streaming(streaming: DictConfig) -> None:
    """The streaming geometry every streaming stage shares, by RULES: a chunk of > 0 encoder frames
    (full context is reported beside every streaming result, never under its name); left chunks -1
    (unlimited, where a family supports it) or >= 0."""
    for key in ("chunk_size", "num_decoding_left_chunks"):
        ok, allowed = RULES[f"streaming.{key}"]
        if not ok(streaming[key]):
            raise EdgeAsrError(f"streaming.{key}={streaming[key]!r}: must be {allowed}")


def to_dict(cfg: DictConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def dataclass_from(cls: Type[T], section: DictConfig, name: str, other_keys: Sequence[str] = ()) -> T:
    """A config dataclass from the params section `name` holding its fields (lists become tuples).
    Every key of the section is a field or one of `other_keys` (read elsewhere); any other key, or a
    missing field, is an error naming it."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(section.keys()) - names - set(other_keys))
    if unknown:
        raise EdgeAsrError(f"{name}.{unknown[0]}: no such setting (known: {', '.join(sorted(names | set(other_keys)))})")
    missing = sorted(names - set(section.keys()))
    if missing:
        raise EdgeAsrError(f"{name}.{missing[0]}: not set")
    values = {f.name: section[f.name] for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, ListConfig) else v for k, v in values.items()})


def compose(output: Path, overrides: Sequence[str], conf_dir: Path = Path("conf")) -> None:
    """params.yaml = compose(conf/ + overrides), exactly as `dvc exp run -S` writes it."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(output, str(conf_dir.resolve()), None, "config", str(conf_dir.resolve()), list(overrides))


def main(argv: List[str]) -> None:
    """params.yaml = compose(conf/ + argv); a bad override is a one-line error, not Hydra's traceback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        compose(Path("params.yaml"), argv)
    except (HydraException, OmegaConfBaseException) as exc:
        raise EdgeAsrError(f"conf/: {str(exc).splitlines()[0]}") from None


if __name__ == "__main__":
    from .cli import run_stage

    run_stage(main)
