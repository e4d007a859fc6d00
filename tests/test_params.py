"""params.yaml equals compose(conf/); stages see exactly their declared keys."""

import shutil
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

from edgeasr.errors import EdgeAsrError
from edgeasr.params import compose, dataclass_from, declared_params, load_stage_params

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_yaml_equals_dvc_compose(tmp_path):
    out = tmp_path / "params.yaml"
    compose(out, [], ROOT / "conf")
    assert out.read_text() == (ROOT / "params.yaml").read_text(), "params.yaml is stale: run python -m edgeasr.params"


def test_every_group_option_has_a_name():
    for path in (ROOT / "conf").glob("*/*.yaml"):
        if path.parent.name == "experiment":
            continue
        text = yaml.safe_load(path.read_text())
        assert "name" in text, f"{path} has no name:"


@pytest.mark.parametrize("overrides", [["model=demo_moe"], ["experiment=tiny"], ["model=wenet", "model.dir=/m"],
                                       ["model=demo_scratch"], ["npu=rk3588"]])
def test_options_compose(tmp_path, overrides):
    compose(tmp_path / "p.yaml", overrides, ROOT / "conf")
    params = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert params["model"]["name"] == {"model=demo_moe": "demo_moe", "model=wenet": "wenet",
                                       "model=demo_scratch": "demo_scratch"}.get(overrides[0], "demo")
    # shipped models are read from models/, anything trained here from the train stage's output
    assert (params["model"]["dir"], params["model"]["train"]["enabled"]) == {
        "model=demo_moe": ("models/demo_moe", False), "model=wenet": ("/m", False),
        "model=demo_scratch": ("exp/trained_model", True), "experiment=tiny": ("exp/trained_model", True),
    }.get(overrides[0], ("models/demo", False))
    if overrides[0] == "model=demo_moe":
        assert params["model"]["train"]["architecture"]["encoder_conf"]["mlp_type"] == "moe"
        demo = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]["train"]["architecture"]["encoder_conf"]
        moe = params["model"]["train"]["architecture"]["encoder_conf"]
        assert {k: v for k, v in moe.items() if k not in ("mlp_type", "n_expert", "n_expert_activated")} == demo


# Options that leave a mandatory value (???) for the user, and the values a user would pass.
MANDATORY = {"model=wenet": ["model.dir=/m"],
             "data=lists": ["data.root=/l", "data.test_sets={test: /l/test.list}", "data.cali_list=/l/cali.list"]}


@pytest.mark.parametrize("option", sorted(f"{p.parent.name}={p.stem}" for p in (ROOT / "conf").glob("*/*.yaml")))
def test_every_option_composes_and_every_stage_accepts_it(tmp_path, option):
    """Each file under conf/<group>/ composes, every dvc.yaml stage loads its declared keys under it
    (values inside their rules), and the sections read as dataclasses have no unknown or missing key."""
    from edgeasr.demo.corpus import corpus_config
    from edgeasr.demo.trainer import train_config

    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    compose(tmp_path / "params.yaml", [option, *MANDATORY.get(option, [])], ROOT / "conf")
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]:
        load_stage_params(stage, [], tmp_path)
    params = OmegaConf.load(tmp_path / "params.yaml")
    if "architecture" in params.model.train:  # a trainable recipe (model=wenet only deploys)
        train_config(params.model.train)
    if params.data.synth.enabled:
        corpus_config(params.data.synth)


def test_no_reserved_top_level_names():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert not {"size", "nfiles"} & set(params)


@pytest.fixture
def project(tmp_path):
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path)
    return tmp_path


def test_stage_sees_only_declared_keys(project):
    p = load_stage_params("eval_torch", [], project)
    assert p.streaming.chunk_size == 8
    with pytest.raises(ConfigAttributeError):
        _ = p.model.train  # not declared by eval_torch
    assert set(declared_params(project / "dvc.yaml", "train")) == {"model.name", "model.train", "data.train_list", "data.units"}


def test_overrides_by_hand(project):
    p = load_stage_params("eval_torch", ["streaming.chunk_size=4", "compare.beam_size=3"], project)
    assert (p.streaming.chunk_size, p.compare.beam_size) == (4, 3)
    with pytest.raises(EdgeAsrError, match="does not declare"):
        load_stage_params("eval_torch", ["model.train.seed=3"], project)
    with pytest.raises(EdgeAsrError, match="expected key=value"):
        load_stage_params("eval_torch", ["chunk_size"], project)


def test_unset_mandatory_value_is_named(project):
    compose(project / "params.yaml", ["model=wenet"], ROOT / "conf")
    with pytest.raises(EdgeAsrError, match=r"model\.dir not set \(pass -S model\.dir="):
        load_stage_params("eval_torch", [], project)
    # ...by the first stage already, which does not read it (DVC would fail only after synth ran)
    with pytest.raises(EdgeAsrError, match=r"model\.dir not set"):
        load_stage_params("synth", [], project)
    compose(project / "params.yaml", ["data=lists"], ROOT / "conf")
    with pytest.raises(EdgeAsrError, match=r"data\.root, data\.test_sets, data\.cali_list not set"):
        load_stage_params("synth", [], project)


@pytest.mark.parametrize("stage,override,message", [
    ("eval_torch", "streaming.chunk_size=0", r"streaming\.chunk_size=0: must be an integer >= 1"),
    ("eval_torch", "streaming.chunk_size=-3", r"streaming\.chunk_size=-3: must be an integer >= 1"),
    ("eval_torch", "streaming.chunk_size=2.5", r"streaming\.chunk_size=2\.5: must be an integer"),
    ("eval_torch", "streaming.num_decoding_left_chunks=abc", r"num_decoding_left_chunks='abc'"),
    ("eval_torch", "compare.beam_size=0", r"compare\.beam_size=0: must be an integer >= 1"),
    ("eval_torch", "compare.modes=[ctc_greedy,beam]", r"compare\.modes=.*must be a non-empty list of ctc_greedy"),
    ("eval_onnx", "compare.reverse_weight=2", r"compare\.reverse_weight=2: must be a number in \[0\.0, 1\.0\]"),
    ("calibrate", "calibrate.max_samples=0.5", r"calibrate\.max_samples=0\.5: must be an integer >= 1"),
    ("calibrate", "calibrate.max_samples=many", r"calibrate\.max_samples='many'"),
    ("compile", "bpu.calibration_type=minmax", r"bpu\.calibration_type='minmax': must be one of default"),
    ("eval_torch", "compare.beam_sise=4", r"override 'compare\.beam_sise': no such key .*compare has: beam_size"),
])
def test_bad_values_are_one_line_errors_naming_the_key(project, stage, override, message):
    with pytest.raises(EdgeAsrError, match=message) as info:
        load_stage_params(stage, [override], project)
    assert "\n" not in str(info.value)


def test_every_rule_accepts_the_committed_defaults(project):
    for stage in ("eval_torch", "eval_onnx", "export", "calibrate", "compile", "train"):
        load_stage_params(stage, [], project)  # raises on any committed value outside its rule


def test_dataclass_from_names_unknown_and_missing_settings():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Settings:
        seed: int
        rates: tuple

    section = OmegaConf.create({"seed": 1, "rates": [1, 2], "enabled": True})
    assert dataclass_from(Settings, section, "x", ("enabled",)) == Settings(1, (1, 2))
    with pytest.raises(EdgeAsrError, match=r"x\.enabled: no such setting \(known: rates, seed\)"):
        dataclass_from(Settings, section, "x")
    with pytest.raises(EdgeAsrError, match=r"x\.rates: not set"):
        dataclass_from(Settings, OmegaConf.create({"seed": 1}), "x")


def test_setting_values_match_by_type_as_well():
    from edgeasr.checks import is_one_of

    assert is_one_of(True, (True, False)) and is_one_of("O3", ("O2", "O3"))
    assert not is_one_of(1, (True, False))  # YAML's 1 is not a boolean
    assert not is_one_of(1.0, (1, 2)) and not is_one_of("1", (1, 2))


def test_compute_is_no_stage_param_and_composes_for_both_options(tmp_path):
    """Where evaluations run changes no number: no stage declares `compute` (so changing it reruns
    nothing), the stages read it through load_section, and both options compose to valid settings."""
    from edgeasr.evaluate.engine import load_compute

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert not any(p == "compute" or str(p).startswith("compute.") for s in stages.values() for p in s.get("params", []))
    for overrides, expected in ((["compute=local"], ("local", 0, None)),
                                (["compute=cluster", "compute.scheduler=tcp://127.0.0.1:8786"],
                                 ("cluster", 0, "tcp://127.0.0.1:8786"))):
        compose(tmp_path / "params.yaml", overrides, ROOT / "conf")
        settings = load_compute(tmp_path)
        assert (settings.name, settings.workers, settings.scheduler) == expected and settings.shard_utts > 0
    compose(tmp_path / "params.yaml", ["compute.workers=-2"], ROOT / "conf")
    with pytest.raises(EdgeAsrError, match=r"compute\.workers=-2: must be an integer >= 0"):
        load_compute(tmp_path)
